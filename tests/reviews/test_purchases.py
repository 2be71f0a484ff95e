"""Verified purchases from order events, through a real broker and the ``reviews`` group.

Order events are appended to the real embedded Valkey as sales' relay would; the
real consumer (reviews' inbox, its batch handler) applies them to the test
PostgreSQL. Then reviews answers who may review, with no sales client at all, and
the admin listing shows what the audit compares with sales' paid orders.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from flask import Flask
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from reviews_service import purchases
from reviews_service.models import INBOX
from shopkit.config import Settings
from shopkit.events.catalog import stream_for
from shopkit.events.consumer import Consumer, ConsumerSettings
from shopkit.events.envelope import FIELD, Event, decode
from shopkit.events.metrics import EVENTS_CONSUMED
from tests.support.events import FAST, append, caught_up, drain, sample
from tests.support.identity import Identity, bearer
from tests.support.reviews import FakeShop, World, assert_problem, order_event, placed

ORDERS = stream_for("order")

#: This file relays the outbox itself (tests.conftest: no live relay of it meanwhile).
pytestmark = pytest.mark.sole_relay("reviews")


def consumer(valkey: redis.Redis, db_engine: Engine, name: str = "reviews-test") -> Consumer:
    """A member of the ``reviews`` group with reviews' inbox and handler (fast settings)."""
    made = Consumer(
        valkey,
        sessionmaker(db_engine),
        INBOX,
        group=purchases.GROUP,
        streams=purchases.STREAMS,
        batch_handler=purchases.apply_order_events,
        name=name,
        settings=ConsumerSettings(**FAST.__dict__),
    )
    made.ensure_groups()
    return made


def verified(db_engine: Engine) -> set[tuple[int, int, str]]:
    """Every verified purchase ``(customer, product, order)``."""
    with sessionmaker(db_engine)() as session:
        page = purchases.verified_purchases(session, 1, 100)
    return {(p.customer_id, p.product_id, str(p.order_id)) for p in page["items"]}


def inbox_rows(db_engine: Engine) -> int:
    with db_engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(INBOX)).scalar_one())


def new_order() -> str:
    return str(uuid.uuid4())


def test_each_order_event_is_applied_once_even_when_delivered_twice(
    world: World,
    shop: FakeShop,
    valkey: redis.Redis,
    db_engine: Engine,
) -> None:
    ann, bob, cy, dee = (world.customer() for _ in range(4))
    shop.products.update({7, 8, 9})
    paid, failed, cancelled, unsettled = (new_order() for _ in range(4))
    events = [
        placed(paid, ann.id, 7, 8),
        order_event("completed", paid, ann.id, 2, total="9.00"),
        order_event("shipped", paid, ann.id, 3, carrier=None, tracking_number=None),
        placed(failed, bob.id, 7),
        order_event("failed", failed, bob.id, 2, failure_code="insufficient_funds"),
        placed(cancelled, cy.id, 9),
        order_event("completed", cancelled, cy.id, 2, total="3.00"),
        order_event("cancelled", cancelled, cy.id, 3),
        placed(unsettled, dee.id, 8),
    ]
    append(valkey, *events)
    # Delivered twice: a relay that died before marking its rows publishes them again.
    append(valkey, events[0], events[1], events[7])
    before = sample(EVENTS_CONSUMED, "shop_events_consumed_total", group="reviews",
                    outcome="duplicate") or 0.0  # fmt: skip
    reader = consumer(valkey, db_engine)  # a group created after the events: reads from the start
    drain(reader, until=caught_up(valkey, purchases.GROUP, [ORDERS]))

    assert verified(db_engine) == {(ann.id, 7, paid), (ann.id, 8, paid)}
    assert inbox_rows(db_engine) == len(events)  # each event recorded (and applied) once
    duplicates = sample(EVENTS_CONSUMED, "shop_events_consumed_total", group="reviews",
                        outcome="duplicate")  # fmt: skip
    assert duplicates == before + 3

    # Who may review now, asked of reviews alone (its app has no sales client).
    assert world.submit(ann, 8).status_code == 201
    assert_problem(world.submit(bob, 7), 403, "not_a_buyer")  # the order failed
    assert_problem(world.submit(cy, 9), 403, "not_a_buyer")  # cancelled and refunded
    pending = world.submit(dee, 8)
    body = assert_problem(pending, 409, "purchase_pending")  # placed, not settled yet
    assert "try again" in body["detail"]
    assert pending.headers["Retry-After"] == "1"
    assert ("sales",) not in {call[:1] for call in shop.calls}

    # Its completion arrives: the same writer is let in.
    append(valkey, order_event("completed", unsettled, dee.id, 2, total="2.00"))
    drain(reader, until=caught_up(valkey, purchases.GROUP, [ORDERS]))
    assert world.submit(dee, 8).status_code == 201


def test_late_and_out_of_order_events_never_undo_a_newer_status(
    world: World,
    shop: FakeShop,
    valkey: redis.Redis,
    db_engine: Engine,
) -> None:
    """Around failures an older event can be applied after a newer one (a retry, a
    replayed dead letter): the order keeps the status of its latest event."""
    ann = world.customer()
    shop.products.add(7)
    order = new_order()
    reader = consumer(valkey, db_engine)
    append(valkey, order_event("completed", order, ann.id, 2, total="1.00"))
    drain(reader, until=caught_up(valkey, purchases.GROUP, [ORDERS]))
    assert verified(db_engine) == set()  # paid, but its lines are not known yet
    assert_problem(world.submit(ann, 7), 403, "not_a_buyer")
    append(valkey, placed(order, ann.id, 7))  # its placed arrives late
    drain(reader, until=caught_up(valkey, purchases.GROUP, [ORDERS]))
    assert verified(db_engine) == {(ann.id, 7, order)}

    append(valkey, order_event("cancelled", order, ann.id, 4))
    append(valkey, order_event("delivered", order, ann.id, 3))  # older than the cancellation
    drain(reader, until=caught_up(valkey, purchases.GROUP, [ORDERS]))
    assert verified(db_engine) == set()
    with db_engine.connect() as conn:
        status = conn.execute(
            text("SELECT status, sequence FROM reviews.purchases WHERE order_id = :id"),
            {"id": order},
        ).one()
    assert tuple(status) == ("cancelled", 4)


def test_a_second_paid_order_keeps_the_buyer_verified_after_one_is_cancelled(
    world: World,
    valkey: redis.Redis,
    db_engine: Engine,
) -> None:
    ann = world.customer()
    first, second = new_order(), new_order()
    reader = consumer(valkey, db_engine)
    append(
        valkey,
        placed(first, ann.id, 7),
        order_event("completed", first, ann.id, 2, total="1.00"),
        placed(second, ann.id, 7, 8),
        order_event("completed", second, ann.id, 2, total="2.00"),
        order_event("cancelled", first, ann.id, 3),
    )
    drain(reader, until=caught_up(valkey, purchases.GROUP, [ORDERS]))
    assert verified(db_engine) == {(ann.id, 7, second), (ann.id, 8, second)}


def test_a_malformed_order_event_is_dead_lettered_and_the_stream_flows_on(
    world: World,
    valkey: redis.Redis,
    db_engine: Engine,
) -> None:
    ann = world.customer()
    order = new_order()
    # No customer, no lines: it can never be applied.
    bad = Event(
        id=str(uuid.uuid4()),
        source="/sales",
        type="shop.order.placed.v1",
        subject=order,
        time=datetime.now(UTC),
        data={"order_id": order},
        sequence=1,
    )
    reader = consumer(valkey, db_engine)
    append(valkey, bad, placed(order, ann.id, 7), order_event("completed", order, ann.id, 2,
                                                                 total="1.00"))  # fmt: skip
    drain(reader, until=lambda: bool(valkey.xlen("events:dead:reviews")))
    drain(reader, until=caught_up(valkey, purchases.GROUP, [ORDERS]))
    assert verified(db_engine) == {(ann.id, 7, order)}
    [(_, fields)] = valkey.xrange("events:dead:reviews")
    assert decode(fields[FIELD.encode()]).id == bad.id
    assert b"KeyError" in fields[b"error"]


def test_an_order_event_without_a_sequence_cannot_be_ordered_so_it_fails(
    db_engine: Engine,
) -> None:
    order = new_order()
    unordered = dataclasses.replace(placed(order, 1, 7), sequence=None)
    with Session(db_engine) as session, pytest.raises(ValueError, match="has no sequence"):
        purchases.apply_order_events(session, [unordered])


# --- the admin listing --------------------------------------------------------------------------


def test_the_verified_purchases_listing_is_admin_only_and_paged(
    world: World, identity: Identity
) -> None:
    ann, bob = world.buyer(7, 8), world.buyer(7)
    path = "/admin/verified-purchases"
    assert_problem(world.client.get(path), 401)
    assert_problem(world.client.get(path, headers=ann.headers), 403, "forbidden")
    service = bearer(identity.service_token("sales"))
    assert_problem(world.client.get(path, headers=service), 403, "forbidden")

    listed = world.client.get(path, headers=world.admin)
    assert listed.status_code == 200
    page = listed.get_json()
    assert (page["total"], page["page"], page["page_size"]) == (3, 1, 20)
    assert [(i["customer_id"], i["product_id"]) for i in page["items"]] == sorted(
        [(ann.id, 7), (ann.id, 8), (bob.id, 7)]
    )
    assert all(set(item) == {"customer_id", "product_id", "order_id"} for item in page["items"])
    assert len({i["order_id"] for i in page["items"] if i["customer_id"] == ann.id}) == 1
    second = world.client.get(f"{path}?page=2&page_size=2", headers=world.admin).get_json()
    assert (second["total"], len(second["items"])) == (3, 1)
    of_product = world.client.get(f"{path}?product_id=8", headers=world.admin).get_json()
    assert [(i["customer_id"], i["product_id"]) for i in of_product["items"]] == [(ann.id, 8)]
    of_bob = world.client.get(f"{path}?customer_id={bob.id}", headers=world.admin).get_json()
    assert of_bob["total"] == 1
    for bad in ("page=0", "page_size=101", "customer_id=0", "product_id=x"):
        assert_problem(world.client.get(f"{path}?{bad}", headers=world.admin), 422)


# --- inside the service's own workers -----------------------------------------------------------


@pytest.fixture
def running_app(
    make_settings: Callable[..., Settings],
    key_resolver: Any,
    broker: Any,
    valkey: redis.Redis,
) -> Any:
    """A reviews app that is not ``TESTING``, with ``EVENTS_URL``: its first request starts
    its relay and its member of the ``reviews`` group; both are stopped after the test."""
    from reviews_service import create_app

    app: Flask = create_app(
        {
            "SETTINGS": make_settings("reviews", events_url=broker.url),
            "KEY_RESOLVER": key_resolver,
            "REVIEWS_CLIENTS": None,
        }
    )
    yield app
    for member in app.extensions.get("shop_consumers", {}).values():
        member.stop()
    relay = app.extensions.get("shop_relay")
    if relay is not None:
        relay.stop()


def test_the_service_consumes_order_events_and_publishes_review_events_in_its_workers(
    running_app: Flask,
    world: World,
    valkey: redis.Redis,
    db_engine: Engine,
) -> None:
    ann = world.customer()
    client = running_app.test_client()
    assert client.get("/healthz").status_code == 200  # the first request starts both threads
    member = running_app.extensions["shop_consumers"]["reviews"]
    assert member.started and running_app.extensions["shop_relay"].started

    order = new_order()
    start = time.monotonic()
    append(valkey, placed(order, ann.id, 7), order_event("completed", order, ann.id, 2,
                                                           total="1.00"))  # fmt: skip
    while verified(db_engine) != {(ann.id, 7, order)}:
        assert time.monotonic() - start < 10, "the service's consumer did not apply the events"
        time.sleep(0.01)
    # Well within a consumer's block time: XREADGROUP returns as soon as entries arrive.
    assert time.monotonic() - start < 1.0

    world.shop.products.add(7)
    created = world.client.post(
        "/reviews", json={"product_id": 7, "rating": 5, "comment": "Yes."}, headers=ann.headers
    )
    assert created.status_code == 201
    review_id = str(created.get_json()["id"])
    deadline = time.monotonic() + 10
    while not any(
        decode(fields[FIELD.encode()]).subject == review_id
        for _, fields in valkey.xrange(stream_for("review"))
    ):
        assert time.monotonic() < deadline, "the service's relay did not publish the review"
        time.sleep(0.02)
