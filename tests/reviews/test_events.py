"""Reviews' events: each change of a review writes exactly one outbox row in its own
transaction, with data valid against the catalogue's schema; a refused or rolled-back
change writes none; the relay publishes each review's events in order. Real PostgreSQL,
a real embedded Valkey."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from reviews_service import moderation
from reviews_service.models import OUTBOX, Review
from shopkit.db import transaction
from tests.support.events import published_by_subject, relay_everything
from tests.support.outbox import checked, outbox_rows
from tests.support.reviews import FakeShop, World, assert_problem

REVIEW = "shop.review.{}.v1"

#: This file relays the outbox itself (tests.conftest: no live relay of it meanwhile).
pytestmark = pytest.mark.sole_relay("reviews")


def events(db_engine: Engine, review_id: int | None = None) -> list[Any]:
    """The reviews outbox's rows (of one review), each checked against its schema."""
    return checked(outbox_rows(db_engine, "reviews", aggregate_id=review_id), "review")


def test_each_change_of_a_review_writes_one_event_in_order(world: World, db_engine: Engine) -> None:
    author = world.buyer(7)
    review = world.review(author, 7, rating=4)
    world.approve(review["id"])
    world.moderate(review["id"], "flag")
    world.moderate(review["id"], "reject")
    world.moderate(review["id"], "approve")
    edited = world.client.patch(
        f"/reviews/{review['id']}", json={"rating": 2}, headers=author.headers
    )
    assert edited.status_code == 200
    same = world.client.patch(
        f"/reviews/{review['id']}", json={"rating": 2}, headers=author.headers
    )
    assert same.status_code == 200  # changes nothing: no event
    assert (
        world.client.delete(f"/reviews/{review['id']}", headers=author.headers).status_code == 204
    )

    rows = events(db_engine, review["id"])
    names = ["submitted", "approved", "flagged", "rejected", "approved", "submitted", "deleted"]
    assert [(row.sequence, row.type) for row in rows] == [
        (i, REVIEW.format(name)) for i, name in enumerate(names, start=1)
    ]
    assert [row.payload["rating"] for row in rows] == [4, 4, 4, 4, 4, 2, 2]
    assert {
        (row.payload["review_id"], row.payload["product_id"], row.payload["customer_id"])
        for row in rows
    } == {(review["id"], 7, author.id)}


def test_refused_changes_write_no_event(world: World, shop: FakeShop, db_engine: Engine) -> None:
    author = world.buyer(7)
    stranger = world.customer()
    shop.products.add(8)
    assert_problem(world.submit(stranger, 8), 403, "not_a_buyer")
    assert_problem(world.submit(author, 9), 404, "not_found")
    review = world.review(author, 7)
    assert_problem(world.submit(author, 7), 409, "already_reviewed")
    assert_problem(world.moderate(review["id"], "burn"), 422)
    assert_problem(world.moderate(review["id"] + 1000, "approve"), 404)
    patch = world.client.patch(
        f"/reviews/{review['id']}", json={"rating": 1}, headers=stranger.headers
    )
    assert patch.status_code in (403, 404)
    assert [row.type for row in events(db_engine)] == [REVIEW.format("submitted")]


def test_a_rolled_back_decision_leaves_no_event(
    reviews_app: Flask, world: World, db_engine: Engine, stored: Callable[[int], Any]
) -> None:
    """The event is written in the decision's transaction: when that unit of work rolls
    back (here an outer one the decision joins, failing after it), both are gone."""
    review = world.review(world.buyer(7), 7)
    database = reviews_app.extensions["shop_db"]
    with database.session() as session, pytest.raises(RuntimeError), transaction(session):
        locked = session.get(Review, review["id"], with_for_update=True)
        assert locked is not None
        moderation.moderate(session, locked, "admin", "approve", None)
        assert [row.type for row in events(db_engine)] == [REVIEW.format("submitted")]
        raise RuntimeError("the unit of work fails after the decision")
    assert [row.type for row in events(db_engine)] == [REVIEW.format("submitted")]
    assert stored(review["id"])["status"] == "pending"


def test_concurrent_duplicates_write_one_submitted_event(
    reviews_app: Flask, world: World, shop: FakeShop, db_engine: Engine
) -> None:
    buyer = world.buyer(7)
    shop.barrier = threading.Barrier(2, timeout=10)
    statuses: list[int] = []

    def submit() -> None:
        client: FlaskClient = reviews_app.test_client()
        response = client.post(
            "/reviews",
            data=json.dumps({"product_id": 7, "rating": 3, "comment": "Twice."}),
            content_type="application/json",
            headers=buyer.headers,
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [201, 409]
    assert [row.type for row in events(db_engine)] == [REVIEW.format("submitted")]


def test_the_relay_publishes_each_reviews_events_in_order(
    reviews_app: Flask,
    world: World,
    db_engine: Engine,
    valkey: redis.Redis,
) -> None:
    first = world.review(world.buyer(1), 1, rating=5)
    second = world.review(world.buyer(1), 1, rating=3)
    world.approve(second["id"])
    world.approve(first["id"])
    world.moderate(second["id"], "reject")
    engine = reviews_app.extensions["shop_db"].engine  # as the reviews role
    relay_everything(engine, OUTBOX, valkey, "reviews")
    by_review = published_by_subject(valkey, "review")
    assert [e.type.split(".")[2] for e in by_review[str(first["id"])]] == ["submitted", "approved"]
    assert [e.type.split(".")[2] for e in by_review[str(second["id"])]] == [
        "submitted",
        "approved",
        "rejected",
    ]
    assert [e.sequence for e in by_review[str(second["id"])]] == [1, 2, 3]
    assert all(e.source == "/reviews" for evs in by_review.values() for e in evs)
    assert all(row.published_at is not None for row in events(db_engine))
