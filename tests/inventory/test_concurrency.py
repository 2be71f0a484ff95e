"""Concurrent reservations against real gunicorn processes: stock is never oversold."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from shopkit.stack import ServiceProcess, free_port
from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, SERVICE_SECRET, bearer

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def running(database_url: str) -> Iterator[dict[str, ServiceProcess]]:
    """The customers (token issuer) and inventory services under gunicorn on the test database."""
    customers_port, inventory_port = free_port(), free_port()
    env = {
        "DATABASE_URL": database_url,
        "ADMIN_USERNAME": ADMIN_USERNAME,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "SERVICE_CLIENT_SECRET": SERVICE_SECRET,
        "CUSTOMERS_URL": f"http://127.0.0.1:{customers_port}",
        "INVENTORY_URL": f"http://127.0.0.1:{inventory_port}",
        "LOG_LEVEL": "WARNING",
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "8192",
    }
    started: dict[str, ServiceProcess] = {}
    try:
        for name, port in (("customers", customers_port), ("inventory", inventory_port)):
            started[name] = ServiceProcess(name, port, env=env, workers=2, threads=8).start()
        for process in started.values():
            process.wait_ready(timeout_s=60)
        yield started
    finally:
        for process in started.values():
            process.stop()


def test_thirty_concurrent_reservations_on_stock_five(
    running: dict[str, ServiceProcess],
    inventory: FlaskClient,
    make_product: Callable[..., dict[str, Any]],
) -> None:
    token = requests.post(
        running["customers"].url + "/auth/service-token",
        json={"client_id": "sales", "client_secret": SERVICE_SECRET},
        timeout=10,
    ).json()["access_token"]
    product = make_product(stock=5)
    base = running["inventory"].url

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
    running: dict[str, ServiceProcess],
    inventory: FlaskClient,
    make_product: Callable[..., dict[str, Any]],
) -> None:
    token = requests.post(
        running["customers"].url + "/auth/service-token",
        json={"client_id": "sales", "client_secret": SERVICE_SECRET},
        timeout=10,
    ).json()["access_token"]
    product = make_product(stock=5)
    base = running["inventory"].url
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
