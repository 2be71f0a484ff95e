"""Sales' tests' helpers: arranging a shop on the live services, orders, recovery, wallets,
and purchases at once (over HTTP to a batching sales process, or in process)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from customers_service.models import MAX_BALANCE
from sales_service.batching import Batcher
from sales_service.saga import purchase
from sales_service.saga_run import NewSale
from shopkit.auth import ROLE_CUSTOMER, Principal
from shopkit.db import Database
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


def expire_leases(database_url: str) -> None:
    """End the leases of the unsettled orders whose driving request died with its process.

    Recovery leaves an order alone while it is leased to the request that recorded or
    began cancelling it (``sales_service.saga_store.LEASE_S``, 15 s). A test that has
    killed that process ends the lease here instead of waiting it out.
    """
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE sales.sales SET lease_until = now()"
                    " WHERE status IN ('pending', 'cancelling') AND lease_until > now()"
                )
            )
    finally:
        engine.dispose()


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


# --- purchases over HTTP, against a live sales process that batches them -------------------

#: A window long enough that purchases sent together surely meet in one batch.
GATHER = {"SALES_BATCH_WINDOW_MS": "300", "SALES_BATCH_MAX": "32", "SALES_RECOVERY_INTERVAL": "0"}


def post_sale(
    base: str, token: str, product: int, quantity: int, key: str | None = None
) -> requests.Response:
    """``POST /sales`` of ``quantity`` of ``product`` to the sales service at ``base``
    (with an ``Idempotency-Key`` if ``key`` is given)."""
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    return requests.post(
        base + "/sales",
        json={"product_id": product, "quantity": quantity},
        headers=headers,
        timeout=30,
    )


def start_batching_sales(stack: LiveStack, threads: int, **env: str) -> str:
    """Customers and inventory, and one sales worker with ``threads`` threads gathering
    purchases into batches (:data:`GATHER`, plus ``env``); sales' URL."""
    for service in ("customers", "inventory"):
        stack.start(service)
    return stack.start("sales", workers=1, threads=threads, extra_env={**GATHER, **env}).url


def counted(stack: LiveStack, service: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples (in ``service``'s /metrics) whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    body = requests.get(stack.url(service) + "/metrics", timeout=10).text
    wanted = set(labels.items())
    return sum(
        sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == name and wanted <= set(sample.labels.items())
    )


def all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call on a thread of its own, all at once; their results, in order."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda f: f(), calls))


# --- purchases in process, each on a thread and a session of its own ----------------------


def customer_principals(shop: Shop, count: int, balance: str = "50.00") -> list[Principal]:
    """``count`` new buyers with ``balance`` each, as the principals their tokens stand for."""
    principals = []
    for _ in range(count):
        profile, _token = shop.buyer(balance)
        principals.append(
            Principal(subject=profile["username"], role=ROLE_CUSTOMER, customer_id=profile["id"])
        )
    return principals


def concurrently(app: Flask, database: Database, calls: list[Callable[[Any], Any]]) -> list[Any]:
    """Run each ``call(session)`` on its own thread with its own session; their results or
    the exceptions they raised."""
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        with app.app_context(), database.session() as session:
            try:
                results[i] = calls[i](session)
            except Exception as exc:
                results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def purchase_call(
    batcher: Batcher, app: Flask, principal: Principal, product: int
) -> Callable[[Any], Any]:
    """``call(session)``: ``principal`` buys one of ``product`` through ``batcher``."""

    def call(session: Any) -> Any:
        return purchase(
            session,
            app.extensions["sales_clients"],
            principal,
            NewSale(((product, 1),)),
            batcher=batcher,
        )

    return call
