"""One database server per service, for real: four embedded PostgreSQL servers, each
service migrated onto its own and given only its URL, a shopper's journey through the
gateway (a purchase, a refusal, a review, a purchase caught by an inventory outage and a
cancellation caught by a customers outage, both settled by recovery), and then the seeder's audit, which reads only the services' APIs, passes.
That no service ever needs another's database is the point: each server holds one schema.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import fields

import pytest
import requests
from sqlalchemy import create_engine, text

from seeder.audit import Auditor
from seeder.client import Services, admin_login
from seeder.config import Config
from shopkit.config import PROJECT_ROOT
from shopkit.migrations import upgrade
from shopkit.registry import SERVICE_NAMES, packages
from tests.support.database import broker as embedded_broker
from tests.support.database import throwaway_server
from tests.support.gateway import GatewayUnderTest, funded_shopper, login
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, SERVICE_SECRET
from tests.support.live import LiveStack
from tests.support.reviews import once_purchase_known

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def own_servers() -> Iterator[dict[str, str]]:
    """Service → the URL of its own PostgreSQL server (four servers, migrated)."""
    with ExitStack() as stack:
        urls = {}
        for service, package in packages().items():
            _server, url = stack.enter_context(
                throwaway_server(f"shop-{service}-pg-", durable=False)
            )
            upgrade(package, url)
            urls[service] = url
        yield urls


@pytest.fixture(scope="module")
def split_stack(own_servers: dict[str, str]) -> Iterator[LiveStack]:
    """The services, each started with nothing but its own server's URL, and the broker."""
    with embedded_broker.throwaway_broker(prefix="shop-split-valkey-") as broker:
        stack = LiveStack(
            own_servers["customers"],
            (ADMIN_USERNAME, ADMIN_PASSWORD),
            SERVICE_SECRET,
            events_url=broker.url,
        )
        try:
            for service in SERVICE_NAMES:
                stack.start(service, extra_env=own_env(service, own_servers))
            yield stack
        finally:
            stack.close()


def own_env(service: str, urls: dict[str, str]) -> dict[str, str]:
    # Recovery runs only when the test says so (the CLI below), not on a timer.
    return {"DATABASE_URL": urls[service], "SALES_RECOVERY_INTERVAL": "0"}


def schemas(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
                    "AND nspname NOT IN ('information_schema', 'public')"
                )
            )
            return {row[0] for row in rows}
    finally:
        engine.dispose()


def test_journey_and_audit_across_four_database_servers(
    own_servers: dict[str, str], split_stack: LiveStack
) -> None:
    # One server per service, one schema each.
    assert len(set(own_servers.values())) == len(SERVICE_NAMES)
    for service, url in own_servers.items():
        assert schemas(url) == {service}

    gateway = GatewayUnderTest(
        {name: f"127.0.0.1:{port}" for name, port in split_stack.ports.items()}
    ).start()
    try:
        gateway.wait_ready()
        journey(gateway.url, split_stack, own_servers)
    finally:
        gateway.stop()

    # The seeder's audit reads the services it knows (notifications is fed by events).
    known = {f.name for f in fields(Config)}
    urls = {f"{s}_url": split_stack.url(s) for s in SERVICE_NAMES if f"{s}_url" in known}
    config = Config(**urls, admin_username=ADMIN_USERNAME, admin_password=ADMIN_PASSWORD)  # type: ignore[arg-type]
    services = Services(config)
    report = Auditor(services, admin_login(services), pending_after_s=0).run()
    assert report.ok, [(c.name, c.violations) for c in report.checks if not c.ok]
    assert report.sales == {"completed": 1, "failed": 1, "cancelled": 1}
    assert str(report.money_in_sales) == str(report.money_debited) == "179.80"
    assert report.units_sold == 2


def journey(base: str, stack: LiveStack, urls: dict[str, str]) -> None:
    api = requests.Session()

    admin = login(api, base, ADMIN_USERNAME, ADMIN_PASSWORD)
    created = api.post(
        base + "/products/batch", headers=admin,
        json={"products": [
            {"name": "Trail Running Shoes", "category": "clothes", "price": "89.90", "description": "Light.", "stock": 5},
            {"name": "Espresso Beans 1kg", "category": "food", "price": "18.50", "description": "Dark roast.", "stock": 40},
        ]},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    ids = {p["category"]: p["id"] for p in created.json()["items"]}
    sam = funded_shopper(api, base, "split_sam", "200.00")

    # A purchase: sales (its server) reserves in inventory (its server), debits customers (its server).
    sale = api.post(
        base + "/sales", headers=sam, json={"product_id": ids["clothes"], "quantity": 2}
    )
    assert sale.status_code == 201, sale.text
    assert sale.json()["status"] == "completed"
    # Refused: not enough money; nothing charged, stock back.
    refused = api.post(
        base + "/sales", headers=sam, json={"product_id": ids["clothes"], "quantity": 1}
    )
    assert (refused.status_code, refused.json()["code"]) == (409, "insufficient_funds")
    assert api.get(base + f"/products/{ids['clothes']}").json()["stock"] == 3

    # Reviews learns that sam bought it from sales' order events (another server).
    review = once_purchase_known(
        lambda: api.post(
            base + "/reviews",
            headers=sam,
            json={"product_id": ids["clothes"], "rating": 4, "comment": "Good grip."},
        )
    )
    assert review.status_code == 201, review.text
    approved = api.post(
        base + f"/reviews/{review.json()['id']}/moderation",
        headers=admin,
        json={"action": "approve"},
    )
    assert approved.status_code == 200, approved.text
    assert api.get(base + f"/products/{ids['clothes']}/reviews").json()["summary"]["count"] == 1

    # Recovery: inventory is down mid-purchase; the sale stays pending, then settles.
    stack.kill("inventory")
    caught = api.post(base + "/sales", headers=sam, json={"product_id": ids["food"], "quantity": 1})
    assert (caught.status_code, caught.json()["code"]) == (503, "sale_pending")  # recorded
    pending = api.get(base + "/customers/split_sam/sales", headers=sam).json()["items"]
    assert next(s["status"] for s in pending) == "pending"
    stack.start("inventory", extra_env=own_env("inventory", urls))
    assert "1 completed" in recover(stack, urls)
    history = api.get(base + "/customers/split_sam/sales", headers=sam).json()["items"]
    assert sorted(s["status"] for s in history) == ["completed", "completed", "failed"]
    assert api.get(base + "/customers/split_sam/wallet", headers=sam).json()["balance"] == "1.70"
    assert api.get(base + f"/products/{ids['food']}").json()["stock"] == 39

    # Cancellation: customers is down when sales refunds; the order stays cancelling, then
    # recovery refunds the money (customers' server) and returns the stock (inventory's).
    beans = caught.json()["sale_id"]
    stack.kill("customers")
    cancel = api.post(base + f"/sales/{beans}/cancellation", headers=sam)
    assert (cancel.status_code, cancel.json()["code"]) == (503, "sale_pending")
    assert api.get(base + f"/sales/{beans}", headers=sam).json()["status"] == "cancelling"
    stack.start("customers", extra_env=own_env("customers", urls))
    assert "1 cancelled" in recover(stack, urls)
    assert api.get(base + f"/sales/{beans}", headers=sam).json()["status"] == "cancelled"
    assert api.get(base + "/customers/split_sam/wallet", headers=sam).json()["balance"] == "20.20"
    assert api.get(base + f"/products/{ids['food']}").json()["stock"] == 40


def recover(stack: LiveStack, urls: dict[str, str]) -> str:
    """``flask --app sales_service recover`` on the sales server; its report line."""
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "flask"), "--app", "sales_service", "recover", "--older-than", "0"],
        env={**os.environ, **stack.env(), **own_env("sales", urls)},
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
