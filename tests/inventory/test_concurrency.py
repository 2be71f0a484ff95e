"""Concurrent reservations against real gunicorn processes: stock is never oversold."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from tests.conftest import bearer
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
