"""Real gunicorn processes: concurrent reservations never oversell or deadlock, stock comes
back once, and inventory asks the real customers process before it puts paid stock back."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from tests.support.identity import bearer
from tests.support.inventory import Wallets, new_sale_id
from tests.support.live import LiveStack

pytestmark = pytest.mark.processes


@pytest.fixture
def stack(live_stack: LiveStack) -> LiveStack:
    """The session's customers (token issuer) and inventory gunicorn processes, started if need be.

    The session stack's defaults (2 workers x 4 threads) give 8 requests in flight
    across two processes: enough for the races below, which only the database's
    locking can settle. Another test may have started inventory first, so the
    process's own settings are checked rather than asked for.
    """
    live_stack.start("customers")
    inventory = live_stack.start("inventory")
    assert inventory.workers >= 2, "the races need more than one inventory process"
    return live_stack


def test_thirty_concurrent_reservations_on_stock_five(
    stack: LiveStack,
    inventory: FlaskClient,
    make_product: Callable[..., dict[str, Any]],
) -> None:
    token = stack.service_token()
    product = make_product(stock=5)
    base = stack.url("inventory")

    def attempt(_: int) -> int:
        sale_id = str(uuid.uuid4())
        response = requests.post(
            base + "/internal/reservations",
            json={"sale_id": sale_id, "product_id": product["id"], "quantity": 1},
            headers={**bearer(token), "Idempotency-Key": f"{sale_id}:reserve"},
            timeout=30,
        )
        if response.status_code == 409:
            assert response.json()["code"] == "insufficient_stock"
        return response.status_code

    with ThreadPoolExecutor(max_workers=30) as pool:
        statuses = Counter(pool.map(attempt, range(30)))

    assert statuses == {201: 5, 409: 25}
    assert requests.get(f"{base}/products/{product['id']}", timeout=10).json()["stock"] == 0
    reservations = requests.get(
        base + "/internal/reservations?page_size=100", headers=bearer(token), timeout=10
    ).json()
    assert reservations["total"] == 5
    assert sum(r["quantity"] for r in reservations["items"]) == 5


def test_concurrent_releases_restore_stock_once(
    stack: LiveStack,
    inventory: FlaskClient,
    make_product: Callable[..., dict[str, Any]],
) -> None:
    token = stack.service_token()
    product = make_product(stock=5)
    base = stack.url("inventory")
    sale_id = str(uuid.uuid4())
    taken = requests.post(
        base + "/internal/reservations",
        json={"sale_id": sale_id, "product_id": product["id"], "quantity": 4},
        headers={**bearer(token), "Idempotency-Key": f"{sale_id}:reserve"},
        timeout=30,
    )
    assert taken.status_code == 201

    def release(_: int) -> int:
        return requests.post(
            f"{base}/internal/reservations/{sale_id}/release", headers=bearer(token), timeout=30
        ).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = set(pool.map(release, range(10)))

    assert statuses == {200}
    assert requests.get(f"{base}/products/{product['id']}", timeout=10).json()["stock"] == 5


def _reserve(base: str, token: str, lines: list[tuple[int, int]], sale_id: str) -> Any:
    return requests.post(
        base + "/internal/reservations",
        json={"sale_id": sale_id, "items": [{"product_id": p, "quantity": q} for p, q in lines]},
        headers={**bearer(token), "Idempotency-Key": f"{sale_id}:reserve"},
        timeout=30,
    )


def test_forty_concurrent_orders_over_shared_products_in_opposite_orders(
    stack: LiveStack,
    inventory: FlaskClient,
    make_product: Callable[..., dict[str, Any]],
) -> None:
    """Orders lock rows in ascending id order whatever order their lines come in: no deadlock
    (it would be a 500), no oversell, and every unit is either in stock or on a reservation."""
    token = stack.service_token()
    base = stack.url("inventory")
    ids = [make_product(stock=12)["id"] for _ in range(4)]
    baskets = [
        [(ids[0], 1), (ids[1], 2), (ids[2], 1), (ids[3], 1)],
        [(ids[3], 1), (ids[2], 1), (ids[1], 2), (ids[0], 1)],
        [(ids[2], 2), (ids[0], 1)],
        [(ids[0], 1), (ids[2], 2)],
        [(ids[3], 3)],
    ]

    def attempt(i: int) -> int:
        response = _reserve(base, token, baskets[i % len(baskets)], new_sale_id())
        if response.status_code == 409:
            assert response.json()["code"] == "insufficient_stock", response.text
            assert response.json()["products"]
        return response.status_code

    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = Counter(pool.map(attempt, range(40)))

    assert set(statuses) == {201, 409}, statuses
    listed = requests.get(
        base + "/internal/reservations?page_size=100", headers=bearer(token), timeout=10
    ).json()
    assert listed["total"] == statuses[201]
    reserved = Counter[int]()
    for reservation in listed["items"]:
        for line in reservation["items"]:
            reserved[line["product_id"]] += line["quantity"]
    for product_id in ids:
        left = requests.get(f"{base}/products/{product_id}", timeout=10).json()["stock"]
        assert left >= 0
        assert left + reserved[product_id] == 12, product_id


@pytest.fixture
def customers_process(stack: LiveStack, wallets: Wallets) -> Wallets:
    """Sales are paid and refunded in the ledger the live customers process reads."""
    return wallets


def test_twenty_concurrent_returns_put_the_stock_back_once(
    stack: LiveStack,
    inventory: FlaskClient,
    make_product: Callable[..., dict[str, Any]],
    customers_process: Wallets,
) -> None:
    token = stack.service_token()
    base = stack.url("inventory")
    first, second = make_product(stock=5)["id"], make_product(stock=8)["id"]
    sale_id = new_sale_id()
    assert _reserve(base, token, [(first, 4), (second, 3)], sale_id).status_code == 201
    customers_process.debit(sale_id)
    customers_process.refund(sale_id)

    def return_stock(i: int) -> int:
        return requests.post(
            f"{base}/internal/reservations/{sale_id}/return",
            headers={**bearer(token), "Idempotency-Key": f"{sale_id}:return:{i}"},
            timeout=30,
        ).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = Counter(pool.map(return_stock, range(20)))

    assert statuses == {200: 20}
    assert requests.get(f"{base}/products/{first}", timeout=10).json()["stock"] == 5
    assert requests.get(f"{base}/products/{second}", timeout=10).json()["stock"] == 8
    stored = requests.get(
        f"{base}/internal/reservations/{sale_id}", headers=bearer(token), timeout=10
    ).json()
    assert stored["status"] == "returned"


def test_inventory_asks_the_customers_process_before_putting_stock_back(
    stack: LiveStack,
    inventory: FlaskClient,
    make_product: Callable[..., dict[str, Any]],
    customers_process: Wallets,
) -> None:
    """Inventory (a real process) calls customers (a real process) with its own service token:
    a paid sale is not released, and its stock returns only after the refund."""
    token = stack.service_token()
    base = stack.url("inventory")
    product = make_product(stock=5)["id"]
    sale_id = new_sale_id()
    assert _reserve(base, token, [(product, 2)], sale_id).status_code == 201
    customers_process.debit(sale_id)

    def act(action: str) -> requests.Response:
        return requests.post(
            f"{base}/internal/reservations/{sale_id}/{action}",
            headers={**bearer(token), "Idempotency-Key": f"{sale_id}:{action}"},
            timeout=30,
        )

    sold = act("release")
    assert sold.status_code == 409, sold.text
    assert sold.json()["code"] == "reservation_sold"
    early = act("return")
    assert early.status_code == 409, early.text
    assert early.json()["code"] == "not_refunded"
    assert requests.get(f"{base}/products/{product}", timeout=10).json()["stock"] == 3

    customers_process.refund(sale_id)
    returned = act("return")
    assert returned.status_code == 200, returned.text
    assert returned.json()["status"] == "returned"
    assert requests.get(f"{base}/products/{product}", timeout=10).json()["stock"] == 5
