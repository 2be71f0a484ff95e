"""Sales tests run the saga for real: customers and inventory are gunicorn processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from customers_service.models import MAX_BALANCE
from shopkit.config import Settings
from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, SERVICE_SECRET, Identity, bearer
from tests.support.live import LiveStack


@pytest.fixture(scope="session")
def sales_deps(live_stack: Any) -> Any:
    """Customers and inventory running as real processes for the whole session."""
    live_stack.start("customers")
    live_stack.start("inventory")
    return live_stack


@pytest.fixture(scope="session")
def sales_app(sales_deps: Any, make_settings: Callable[..., Settings], key_resolver: Any) -> Flask:
    """The sales app in-process, calling the live customers and inventory over HTTP."""
    from sales_service import create_app

    settings = make_settings(
        "sales",
        customers_url=sales_deps.url("customers"),
        inventory_url=sales_deps.url("inventory"),
        http_connect_timeout_s=1.0,
    )
    return create_app(
        {
            "SETTINGS": settings,
            "KEY_RESOLVER": key_resolver,
            "SALES_RECOVERY": False,
            "TESTING": True,
        }
    )


@pytest.fixture
def sales(sales_app: Flask) -> FlaskClient:
    """A test client of the sales app.

    The app lives for the session while each test empties the tables (ids start again
    at 1): its list of deactivated accounts starts empty for each test, or an account
    an earlier test deactivated would lock out this test's customer with the same id.
    """
    sales_app.extensions["shop_auth"].deactivated.assume(frozenset())
    return sales_app.test_client()


class Shop:
    """Arranges products and funded buyers through the real services, and reads them back."""

    def __init__(self, stack: Any, identity: Identity) -> None:
        self.stack = stack
        self.identity = identity
        self.admin = bearer(identity.admin_token())

    def product(self, price: str = "10.00", stock: int = 10, name: str = "Widget") -> int:
        response = requests.post(
            self.stack.url("inventory") + "/products",
            json={
                "name": name,
                "category": "electronics",
                "price": price,
                "description": "A thing.",
                "stock": stock,
            },
            headers=self.admin,
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

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


@pytest.fixture
def shop(sales_deps: Any, identity: Identity) -> Shop:
    """Arranges products and buyers."""
    return Shop(sales_deps, identity)


def lines(*pairs: tuple[int, int]) -> dict[str, Any]:
    """An order body of ``(product_id, quantity)`` lines."""
    return {"items": [{"product_id": p, "quantity": q} for p, q in pairs]}


def place(sales: FlaskClient, token: str, *pairs: tuple[int, int], **headers: str) -> Any:
    """``POST /sales`` with several lines, in-process."""
    return sales.post("/sales", json=lines(*pairs), headers={**bearer(token), **headers})


@pytest.fixture
def fault_stack(database_url: str, identity: Identity) -> Iterator[LiveStack]:
    """A private set of processes on their own ports, so killing them harms no other test."""
    stack = LiveStack(database_url, (ADMIN_USERNAME, ADMIN_PASSWORD), SERVICE_SECRET)
    try:
        yield stack
    finally:
        stack.stop_all()


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
