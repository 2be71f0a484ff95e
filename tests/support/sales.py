"""Sales' tests' helpers: arranging a shop on the live services, orders, recovery, wallets."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import requests
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from customers_service.models import MAX_BALANCE
from tests.support.identity import Identity, bearer
from tests.support.live import LiveStack
from tests.support.products import create_product


class Shop:
    """Arranges products and funded buyers through the real services, and reads them back."""

    def __init__(self, stack: Any, identity: Identity) -> None:
        self.stack = stack
        self.identity = identity
        self.admin = bearer(identity.admin_token())

    def product(self, price: str = "10.00", stock: int = 10, name: str = "Widget") -> int:
        """A new product in the live inventory; its id."""
        post = partial(requests.post, self.stack.url("inventory") + "/products", timeout=10)
        return int(create_product(post, self.admin, name=name, price=price, stock=stock)["id"])

    def stock(self, product_id: int) -> int:
        response = requests.get(self.stack.url("inventory") + f"/products/{product_id}", timeout=10)
        return int(response.json()["stock"])

    def buyer(self, balance: str = "100.00") -> tuple[dict[str, Any], str]:
        profile, token = self.identity.new_customer()
        if Decimal(balance) > 0:
            charged = self.identity.client.post(
                f"/customers/{profile['username']}/wallet/charge",
                json={"amount": balance},
                headers=bearer(token),
            )
            assert charged.status_code == 200
        return profile, token

    def balance(self, username: str) -> Decimal:
        response = self.identity.client.get(f"/customers/{username}", headers=self.admin)
        return Decimal(response.get_json()["balance"])

    def reservation(self, sale_id: str) -> dict[str, Any] | None:
        response = requests.get(
            self.stack.url("inventory") + f"/internal/reservations/{sale_id}",
            headers=self.admin,
            timeout=10,
        )
        return response.json() if response.status_code == 200 else None


def lines(*pairs: tuple[int, int]) -> dict[str, Any]:
    """An order body of ``(product_id, quantity)`` lines."""
    return {"items": [{"product_id": p, "quantity": q} for p, q in pairs]}


def place(sales: FlaskClient, token: str, *pairs: tuple[int, int], **headers: str) -> Any:
    """``POST /sales`` with several lines, in-process."""
    return sales.post("/sales", json=lines(*pairs), headers={**bearer(token), **headers})


def recover(stack: LiveStack) -> subprocess.CompletedProcess[str]:
    """``flask --app sales_service recover --older-than 0`` with the stack's environment."""
    flask = str(Path(sys.executable).parent / "flask")
    return subprocess.run(
        [flask, "--app", "sales_service", "recover", "--older-than", "0"],
        env={**os.environ, **stack.env("sales")}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def fill_wallet(database_url: str, username: str, room: Decimal) -> None:
    """Top a wallet up to ``room`` under its maximum, with the ledger entry a top-up writes.

    Straight in the database: a top-up takes at most 100,000.00, and the maximum is
    9,999,999,999.99.
    """
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    """
                    WITH wallet AS (
                        SELECT id, balance FROM customers.customers WHERE username = :username
                        FOR UPDATE
                    ), topped AS (
                        UPDATE customers.customers AS c SET balance = :target
                        FROM wallet WHERE c.id = wallet.id
                    )
                    INSERT INTO customers.ledger_entries
                        (customer_id, kind, amount, balance_after, actor)
                    SELECT id, 'charge', :target - balance, :target, 'test' FROM wallet
                    """
                ),
                {"username": username, "target": MAX_BALANCE - room},
            )
    finally:
        engine.dispose()
