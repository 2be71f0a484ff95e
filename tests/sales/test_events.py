"""Sales' order events: each transition writes exactly one outbox row in its own transaction,
with data valid against the catalogue's schema; the relay publishes them in order per order;
purchases never wait for the broker.

Real PostgreSQL, real customers and inventory processes, a real embedded Valkey.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from sales_service.batching import Batcher
from sales_service.lifecycle import ship
from sales_service.models import COMPLETED, OUTBOX
from shopkit.db import Database, transaction
from shopkit.events.catalog import validate_data
from tests.support.broker import restartable
from tests.support.database import broker as embedded_broker
from tests.support.events import published_by_subject, relay_everything, wait_for
from tests.support.identity import Identity, bearer
from tests.support.invariants import check_invariants
from tests.support.live import LiveStack
from tests.support.outbox import outbox_rows
from tests.support.sales import (
    Shop,
    concurrently,
    customer_principals,
    place,
    post_sale,
    purchase_call,
    start_batching_sales,
)

ORDER = "shop.order.{}.v1"

#: This file relays the outbox itself (tests.conftest: no live relay of it meanwhile).
pytestmark = pytest.mark.sole_relay("sales")


def types_of(database_url: str, order_id: str) -> list[str]:
    """The types of one order's events, each checked against its schema, in sequence order."""
    rows = outbox_rows(database_url, "sales", aggregate_id=order_id)
    for row in rows:
        assert row.aggregate == "order"
        validate_data(row.type, row.payload)
        assert row.payload["order_id"] == order_id
    assert [row.sequence for row in rows] == list(range(1, len(rows) + 1))
    return [row.type.split(".")[2] for row in rows]


def test_each_transition_writes_one_schema_valid_event(
    sales: FlaskClient, shop: Shop, identity: Identity, database_url: str
) -> None:
    lamp = shop.product(price="2.50", stock=5, name="Lamp")
    desk = shop.product(price="10.00", stock=3, name="Desk")
    buyer, token = shop.buyer("20.00")
    admin = bearer(identity.admin_token())

    shipped = place(sales, token, (lamp, 2), (desk, 1)).get_json()
    assert shipped["status"] == "completed"
    placed = outbox_rows(database_url, "sales", aggregate_id=shipped["id"])[0].payload
    assert placed == {
        "order_id": shipped["id"],
        "customer_id": buyer["id"],
        "lines": [{"product_id": lamp, "quantity": 2}, {"product_id": desk, "quantity": 1}],
    }
    answer = sales.post(
        f"/sales/{shipped['id']}/shipment",
        json={"carrier": "DHL", "tracking_number": "T1"},
        headers=admin,
    )
    assert answer.status_code == 200, answer.get_json()
    # A refused transition writes nothing.
    assert sales.post(f"/sales/{shipped['id']}/shipment", json={}, headers=admin).status_code == 409
    assert sales.post(f"/sales/{shipped['id']}/delivery", headers=admin).status_code == 200
    assert types_of(database_url, shipped["id"]) == ["placed", "completed", "shipped", "delivered"]
    rows = outbox_rows(database_url, "sales", aggregate_id=shipped["id"])
    assert rows[1].payload["total"] == "15.00"
    assert (rows[2].payload["carrier"], rows[2].payload["tracking_number"]) == ("DHL", "T1")

    cancelled = place(sales, token, (lamp, 1)).get_json()
    answer = sales.post(f"/sales/{cancelled['id']}/cancellation", headers=bearer(token))
    assert answer.status_code == 200, answer.get_json()
    assert types_of(database_url, cancelled["id"]) == ["placed", "completed", "cancelled"]

    failed = place(sales, token, (desk, 1))  # 7.50 left in the wallet: too little
    assert failed.status_code == 409, failed.get_json()
    failed_order = failed.get_json()["sale_id"]
    assert types_of(database_url, failed_order) == ["placed", "failed"]
    assert (
        outbox_rows(database_url, "sales", aggregate_id=failed_order)[1].payload["failure_code"]
        == (failed.get_json()["code"])
    )
    assert len(outbox_rows(database_url, "sales")) == 4 + 3 + 2
    assert check_invariants(database_url).ok


def test_a_rolled_back_transition_writes_no_event(
    sales: FlaskClient,
    shop: Shop,
    sales_db: Database,
    database_url: str,
) -> None:
    lamp = shop.product(stock=5)
    _, token = shop.buyer("100.00")
    sale_id = place(sales, token, (lamp, 1)).get_json()["id"]
    before = outbox_rows(database_url, "sales", aggregate_id=sale_id)
    with sales_db.session() as session, pytest.raises(RuntimeError), transaction(session):
        moved = ship(session, uuid.UUID(sale_id), "DHL", None)
        assert moved.status == "shipped"  # the shipment and its event were written...
        raise RuntimeError("the caller's transaction fails afterwards")
    # ... and rolled back together: the order is still completed, no event was written.
    assert outbox_rows(database_url, "sales", aggregate_id=sale_id) == before
    assert [row.type for row in before] == [ORDER.format("placed"), ORDER.format("completed")]
    detail = sales.get(f"/sales/{sale_id}", headers=bearer(token)).get_json()
    assert detail["status"] == COMPLETED


def test_batched_purchases_write_their_events_in_their_batched_transactions(
    sales_app: Flask,
    sales_db: Database,
    shop: Shop,
    database_url: str,
) -> None:
    product = shop.product(price="1.00", stock=6)
    buyers = customer_principals(shop, 8, balance="5.00")
    batcher = Batcher(sales_app.extensions["sales_clients"], sales_db, window_s=0.3, max_size=8)
    results = concurrently(
        sales_app, sales_db, [purchase_call(batcher, sales_app, b, product) for b in buyers]
    )
    outcomes = [r[0].status if isinstance(r, tuple) else getattr(r, "code", r) for r in results]
    assert sorted(map(str, outcomes)) == ["completed"] * 6 + ["failed"] * 2, outcomes
    rows = outbox_rows(database_url, "sales")
    placed = [row for row in rows if row.type == ORDER.format("placed")]
    assert len(placed) == 8
    # Recorded together: fewer transactions than orders wrote the ``placed`` events.
    assert len({row.xmin for row in placed}) < 8
    settled = [row for row in rows if row.type != ORDER.format("placed")]
    assert sorted(row.type for row in settled) == sorted(
        [ORDER.format("completed")] * 6 + [ORDER.format("failed")] * 2
    )
    assert len({row.xmin for row in settled}) < 8
    for row in rows:
        validate_data(row.type, row.payload)
    # Each settled event committed with its sale's last steps (one transaction).
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            for row in settled:
                steps = conn.execute(
                    text(
                        "SELECT DISTINCT xmin::text FROM sales.saga_steps "
                        "WHERE sale_id = CAST(:id AS uuid) AND step IN ('complete', 'fail')"
                    ),
                    {"id": row.aggregate_id},
                ).scalars()
                assert list(steps) == [row.xmin]
    finally:
        engine.dispose()


def test_the_relay_publishes_each_orders_events_in_order(
    sales: FlaskClient,
    shop: Shop,
    identity: Identity,
    sales_db: Database,
    valkey: redis.Redis,
    database_url: str,
) -> None:
    lamp = shop.product(stock=5)
    _, token = shop.buyer("100.00")
    admin = bearer(identity.admin_token())
    first = place(sales, token, (lamp, 1)).get_json()["id"]
    second = place(sales, token, (lamp, 1)).get_json()["id"]
    for sale_id in (first, second):  # interleaved: first shipped, second shipped, ...
        assert sales.post(f"/sales/{sale_id}/shipment", json={}, headers=admin).status_code == 200
    for sale_id in (second, first):
        assert sales.post(f"/sales/{sale_id}/delivery", headers=admin).status_code == 200
    relay_everything(sales_db.engine, OUTBOX, valkey, "sales")
    by_order = published_by_subject(valkey, "order")
    expected = ["placed", "completed", "shipped", "delivered"]
    for sale_id in (first, second):
        events = by_order[sale_id]
        assert [event.type for event in events] == [ORDER.format(name) for name in expected]
        assert [event.sequence for event in events] == [1, 2, 3, 4]
        assert all(event.source == "/sales" for event in events)
    assert all(row.published_at is not None for row in outbox_rows(database_url, "sales"))


# --- the relay inside the sales process, with the broker away ------------------------------------


@pytest.fixture
def own_broker() -> Iterator[list[embedded_broker.Broker]]:
    """A broker of this test's own (it gets killed and restarted); every one started is
    stopped after."""
    with restartable() as brokers:
        yield brokers


def backlog(database_url: str) -> int:
    return sum(1 for row in outbox_rows(database_url, "sales") if row.published_at is None)


def test_purchases_succeed_with_the_broker_down_and_their_events_follow_once_it_is_back(
    fault_stack: LiveStack,
    identity: Identity,
    database_url: str,
    own_broker: list[embedded_broker.Broker],
) -> None:
    """The sales process runs its relay (EVENTS_URL set); killing the broker fails no
    purchase, the outbox absorbs their events, and they are published once it is back."""
    running = own_broker[0]
    sales = start_batching_sales(fault_stack, 4, EVENTS_URL=running.url)
    shop = Shop(fault_stack, identity)
    product = shop.product(price="1.00", stock=20)
    buyer, token = shop.buyer("20.00")
    early = post_sale(sales, token, product, 1)
    assert early.status_code == 201, early.text
    client = running.client()
    wait_for(
        lambda: len(published_by_subject(client, "order").get(early.json()["id"], [])) == 2,
        timeout_s=30.0,
        every_s=0.1,
    )
    client.close()

    running.kill()
    answers = [post_sale(sales, token, product, 1) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [201] * 3
    assert backlog(database_url) == 6  # placed and completed of each
    assert shop.balance(buyer["username"]) == Decimal("16.00")

    back = embedded_broker.restart(running)
    own_broker.append(back)
    wait_for(lambda: backlog(database_url) == 0, timeout_s=30.0, every_s=0.1)
    client = back.client()
    try:
        by_order = published_by_subject(client, "order")
    finally:
        client.close()
    for answer in answers:
        events = by_order[answer.json()["id"]]
        assert [event.type for event in events] == [
            ORDER.format("placed"),
            ORDER.format("completed"),
        ]
