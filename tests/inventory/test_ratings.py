"""Products' ratings from review events: approvals count, rejections after an approval uncount,
each event takes effect once however often it is delivered and in whatever order a review's
events arrive; ``sort=rating`` orders by them.

Real PostgreSQL, a real embedded Valkey, the consumer group as inventory runs it
(:mod:`inventory_service.ratings`), also in its own thread (:mod:`shopkit.events.service_consumer`).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from inventory_service.models import INBOX, Base
from inventory_service.ratings import GROUP, STREAMS, apply_review_events
from shopkit.events.catalog import stream_for, validate_data
from shopkit.events.consumer import Consumer
from shopkit.events.envelope import FIELD, Event, encode
from shopkit.events.service_consumer import ServiceConsumer
from tests.events.conftest import FAST, broker, valkey  # noqa: F401 (the real broker's fixtures)
from tests.support.database import broker as embedded_broker
from tests.support.events import drain

REVIEW = "shop.review.{}.v1"


class Reviews:
    """Publishes review events as the reviews service's relay would, one sequence per review."""

    def __init__(self, client: redis.Redis) -> None:
        self.valkey = client
        self.sequences: dict[int, int] = {}
        self.next_id = 1

    def event(
        self, action: str, review_id: int, product_id: int, rating: int, *, sequence: int | None
    ) -> Event:
        """A review event (``sequence`` defaults to the review's next one)."""
        if sequence is None:
            sequence = self.sequences.get(review_id, 0) + 1
        self.sequences[review_id] = max(sequence, self.sequences.get(review_id, 0))
        data = {
            "review_id": review_id,
            "product_id": product_id,
            "customer_id": 7,
            "rating": rating,
        }
        validate_data(REVIEW.format(action), data)
        return Event(
            id=str(uuid.uuid4()),
            source="/reviews",
            type=REVIEW.format(action),
            subject=str(review_id),
            time=datetime.now(UTC),
            data=data,
            sequence=sequence,
        )

    def publish(
        self,
        action: str,
        review_id: int,
        product_id: int,
        rating: int,
        *,
        sequence: int | None = None,
    ) -> Event:
        """Append one event to the review stream; the event."""
        published = self.event(action, review_id, product_id, rating, sequence=sequence)
        self.send(published)
        return published

    def send(self, published: Event) -> None:
        """Append ``published`` (again, if it was already)."""
        self.valkey.xadd(stream_for("review"), {FIELD: encode(published)})

    def new_review(self) -> int:
        """A fresh review id."""
        self.next_id += 1
        return self.next_id


@pytest.fixture
def reviews(valkey: redis.Redis) -> Reviews:  # noqa: F811
    """Review events onto the real broker."""
    return Reviews(valkey)


@pytest.fixture
def consumer(inventory_app: Flask, valkey: redis.Redis) -> Consumer:  # noqa: F811
    """A member of inventory's group, as its workers run it (with short timeouts)."""
    made = Consumer(
        valkey,
        inventory_app.extensions["shop_db"].sessions,
        INBOX,
        group=GROUP,
        streams=STREAMS,
        batch_handler=apply_review_events,
        name="inventory-test",
        settings=FAST,
    )
    made.ensure_groups()
    return made


def caught_up(valkey: redis.Redis) -> Callable[[], bool]:  # noqa: F811
    """Whether the group read every entry of the review stream and acknowledged it."""

    def check() -> bool:
        for stream in STREAMS:
            group = next(g for g in valkey.xinfo_groups(stream) if g["name"].decode() == GROUP)
            if group["lag"] or group["pending"]:
                return False
        return True

    return check


def rating_of(client: FlaskClient, product_id: int, admin: dict[str, str]) -> dict[str, Any]:
    """The product's ``rating`` as its JSON shows it."""
    return client.get(f"/products/{product_id}", headers=admin).get_json()["rating"]  # type: ignore[no-any-return]


def applied(db_engine: Engine) -> int:
    """How many events the ``inventory`` group recorded in its inbox."""
    with db_engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM inventory.inbox WHERE consumer_group = :g"), {"g": GROUP}
            ).scalar_one()
        )


def test_approvals_count_and_a_rejection_after_an_approval_uncounts(
    inventory: FlaskClient,
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    reviews: Reviews,
    consumer: Consumer,
    valkey: redis.Redis,  # noqa: F811
) -> None:
    lamp = make_product()["id"]
    first, second = reviews.new_review(), reviews.new_review()

    def settle(expected: dict[str, Any]) -> None:
        drain(consumer, until=caught_up(valkey))
        assert rating_of(inventory, lamp, admin) == expected

    reviews.publish("submitted", first, lamp, 5)
    settle({"average": None, "count": 0})  # pending: not counted
    reviews.publish("approved", first, lamp, 5)
    settle({"average": "5.00", "count": 1})
    reviews.publish("submitted", second, lamp, 4)
    reviews.publish("approved", second, lamp, 4)
    settle({"average": "4.50", "count": 2})
    reviews.publish("rejected", first, lamp, 5)  # a moderator changed their mind
    settle({"average": "4.00", "count": 1})
    reviews.publish("rejected", first, lamp, 5)  # rejected again: nothing changes
    settle({"average": "4.00", "count": 1})
    reviews.publish("approved", first, lamp, 5)  # and approved it once more
    settle({"average": "4.50", "count": 2})
    reviews.publish("submitted", second, lamp, 1)  # edited: pending again, hidden
    settle({"average": "5.00", "count": 1})
    reviews.publish("approved", second, lamp, 1)  # approved with its new rating
    settle({"average": "3.00", "count": 2})
    reviews.publish("flagged", second, lamp, 1)  # hidden until decided again
    settle({"average": "5.00", "count": 1})
    reviews.publish("approved", second, lamp, 1)
    settle({"average": "3.00", "count": 2})
    reviews.publish("deleted", second, lamp, 1)
    reviews.publish("rejected", first, lamp, 5)
    settle({"average": None, "count": 0})


def test_redelivered_and_duplicated_events_apply_once(
    inventory: FlaskClient,
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    reviews: Reviews,
    consumer: Consumer,
    valkey: redis.Redis,  # noqa: F811
    db_engine: Engine,
) -> None:
    product = make_product()["id"]
    published = []
    for rating in (5, 4, 2):
        review = reviews.new_review()
        published.append(reviews.publish("approved", review, product, rating))
    reviews.send(published[0])  # the same event published twice (a relay died before marking)
    drain(consumer, until=caught_up(valkey))
    assert rating_of(inventory, product, admin) == {"average": "3.67", "count": 3}
    assert applied(db_engine) == 3

    # Every entry delivered once more, as after a crash between the commit and the ack.
    for stream in STREAMS:
        valkey.xgroup_setid(stream, GROUP, id="0")
    drain(consumer, until=caught_up(valkey))
    assert rating_of(inventory, product, admin) == {"average": "3.67", "count": 3}
    assert applied(db_engine) == 3


def test_an_older_event_arriving_late_never_overwrites_a_newer_state(
    inventory: FlaskClient,
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    reviews: Reviews,
    consumer: Consumer,
    valkey: redis.Redis,  # noqa: F811
) -> None:
    product = make_product()["id"]
    kept, dropped, both = reviews.new_review(), reviews.new_review(), reviews.new_review()
    # Approved (2) arrives before its submission (1), e.g. the submission was retried.
    reviews.publish("approved", kept, product, 4, sequence=2)
    # Rejected (3) arrives before the approval (2) it follows.
    reviews.publish("rejected", dropped, product, 1, sequence=3)
    drain(consumer, until=caught_up(valkey))
    reviews.publish("submitted", kept, product, 4, sequence=1)
    reviews.publish("approved", dropped, product, 1, sequence=2)
    # Within one batch too: the newest of a review's events wins whatever the order.
    reviews.publish("rejected", both, product, 2, sequence=3)
    reviews.publish("approved", both, product, 2, sequence=2)
    drain(consumer, until=caught_up(valkey))
    assert rating_of(inventory, product, admin) == {"average": "4.00", "count": 1}


def test_a_bad_review_event_never_holds_back_the_good_ones(
    inventory: FlaskClient,
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    reviews: Reviews,
    consumer: Consumer,
    valkey: redis.Redis,  # noqa: F811
) -> None:
    product = make_product()["id"]
    bad = reviews.event("approved", reviews.new_review(), product, 5, sequence=1)
    poison = dataclasses.replace(bad, data={**bad.data, "rating": 9})  # out of range
    reviews.send(poison)
    reviews.publish("approved", reviews.new_review(), product, 3)
    dead = f"events:dead:{GROUP}"
    drain(consumer, until=lambda: caught_up(valkey)() and valkey.xlen(dead) == 1, rounds=400)
    assert rating_of(inventory, product, admin) == {"average": "3.00", "count": 1}
    [(_, fields)] = valkey.xrange(dead)
    assert b"rating_range" in fields[b"error"]  # the check constraint refused it


def test_two_members_applying_one_products_reviews_at_once_count_each_once(
    inventory_app: Flask,
    inventory: FlaskClient,
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    reviews: Reviews,
    valkey: redis.Redis,  # noqa: F811
) -> None:
    products = [make_product()["id"] for _ in range(3)]
    ratings = {product: [] for product in products}  # type: dict[int, list[int]]
    for n in range(60):
        product, rating = products[n % 3], 1 + n % 5
        reviews.publish("approved", reviews.new_review(), product, rating)
        ratings[product].append(rating)
    members = [
        Consumer(
            valkey,
            inventory_app.extensions["shop_db"].sessions,
            INBOX,
            group=GROUP,
            streams=STREAMS,
            batch_handler=apply_review_events,
            name=f"member-{n}",
            settings=dataclasses.replace(FAST, batch_size=4),
        )
        for n in range(2)
    ]
    members[0].ensure_groups()
    done = caught_up(valkey)
    threads = [
        threading.Thread(target=drain, args=(member,), kwargs={"until": done}) for member in members
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert done()
    for product, given in ratings.items():
        expected = f"{sum(given) / len(given):.2f}"
        assert rating_of(inventory, product, admin) == {"average": expected, "count": len(given)}


def test_a_batch_on_a_product_waits_for_the_uncommitted_batch_before_it(
    inventory_app: Flask,
    inventory: FlaskClient,
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    reviews: Reviews,
) -> None:
    product = make_product()["id"]
    sessions = inventory_app.extensions["shop_db"].sessions
    first = sessions()
    first.begin()
    apply_review_events(
        first, [reviews.event("approved", reviews.new_review(), product, 5, sequence=1)]
    )

    def second() -> None:
        later = reviews.event("approved", reviews.new_review(), product, 3, sequence=1)
        with sessions() as session, session.begin():
            apply_review_events(session, [later])

    other = threading.Thread(target=second)
    other.start()
    other.join(0.5)
    assert other.is_alive()  # queued behind the first batch's lock on the product
    first.commit()
    first.close()
    other.join(10)
    # The second batch counted the first one's review too, committed while it waited.
    assert rating_of(inventory, product, admin) == {"average": "4.00", "count": 2}


def test_the_service_consumer_applies_events_in_its_own_thread(
    inventory_app: Flask,
    inventory: FlaskClient,
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    reviews: Reviews,
    broker: embedded_broker.Broker,  # noqa: F811
) -> None:
    product = make_product()["id"]
    member = ServiceConsumer(
        inventory_app.extensions["shop_db"].url,
        broker.url,
        INBOX,
        service="inventory",
        group=GROUP,
        streams=STREAMS,
        batch_handler=apply_review_events,
    )
    member.start()
    try:
        assert member.consumer.name.endswith(f"-{os.getpid()}")
        reviews.publish("approved", reviews.new_review(), product, 2)
        deadline = time.monotonic() + 10
        while rating_of(inventory, product, admin)["count"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rating_of(inventory, product, admin) == {"average": "2.00", "count": 1}
    finally:
        member.stop()
    assert not member.started


def _member_name(member: ServiceConsumer, names: Any) -> None:
    member.start()
    names.put(member.consumer.name)
    member.stop()


def test_each_forked_worker_joins_the_group_under_its_own_name(
    inventory_app: Flask,
    broker: embedded_broker.Broker,  # noqa: F811
) -> None:
    # Built once before the workers fork, as under gunicorn's --preload.
    member = ServiceConsumer(
        inventory_app.extensions["shop_db"].url,
        broker.url,
        INBOX,
        service="inventory",
        group=GROUP,
        streams=STREAMS,
        batch_handler=apply_review_events,
    )
    forked = multiprocessing.get_context("fork")
    names = forked.Queue()
    workers = [forked.Process(target=_member_name, args=(member, names)) for _ in range(2)]
    for worker in workers:
        worker.start()
    found = {names.get(timeout=30) for _ in workers}
    for worker in workers:
        worker.join(30)
    assert found == {f"{member.consumer.name.rsplit('-', 1)[0]}-{w.pid}" for w in workers}
    member.database.dispose()


def test_sort_by_rating_lists_the_best_rated_first_and_the_unrated_last(
    inventory: FlaskClient,
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    reviews: Reviews,
    consumer: Consumer,
    valkey: redis.Redis,  # noqa: F811
) -> None:
    unrated = make_product(name="Tea unrated")["id"]
    good = make_product(name="Tea good")["id"]
    best = make_product(name="Tea best")["id"]
    tied_few = make_product(name="Tea tied few")["id"]
    tied_many = make_product(name="Tea tied many")["id"]
    also_unrated = make_product(name="Tea also unrated")["id"]
    for product, given in {
        good: [4, 3],
        best: [5],
        tied_few: [4],
        tied_many: [4, 4, 4],
    }.items():
        for rating in given:
            reviews.publish("approved", reviews.new_review(), product, rating)
    drain(consumer, until=caught_up(valkey))
    expected = [best, tied_many, tied_few, good, unrated, also_unrated]

    listed = inventory.get("/products?sort=rating&page_size=100").get_json()
    assert [item["id"] for item in listed["items"]] == expected
    assert listed["items"][0]["rating"] == {"average": "5.00", "count": 1}
    assert listed["items"][3]["rating"] == {"average": "3.50", "count": 2}
    assert listed["items"][-1]["rating"] == {"average": None, "count": 0}
    searched = inventory.get("/products?q=tea&sort=rating").get_json()  # the text search's plan
    assert [item["id"] for item in searched["items"]] == expected
    assert searched["items"][1]["rating"] == {"average": "4.00", "count": 3}
    pages = [
        inventory.get(f"/products?sort=rating&page_size=4&page={page}").get_json()["items"]
        for page in (1, 2)
    ]
    assert [item["id"] for page in pages for item in page] == expected

    for bad in ("-rating", "ratings", "", "rating,price"):
        refused = inventory.get(f"/products?sort={bad}")
        assert refused.status_code == 422, bad
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert "sort" in str(refused.get_json())


def test_the_rating_index_serves_sort_by_rating(
    inventory: FlaskClient, db_engine: Engine, make_product: Callable[..., dict[str, Any]]
) -> None:
    from sqlalchemy.dialects import postgresql

    from inventory_service.catalogue import search_statement

    make_product()
    compiled = (
        search_statement({"sort": "rating"})
        .limit(20)
        .compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    )
    with db_engine.connect() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(row[0] for row in conn.execute(text(f"EXPLAIN {compiled}")))
    assert "ix_products_rating" in plan, plan
    assert "Sort" not in plan.split("ix_products_rating")[0], plan


def test_the_migration_matches_the_models(db_engine: Engine) -> None:
    with db_engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_schemas": True,
                "include_name": lambda name, type_, _p: type_ != "schema" or name == "inventory",
                "compare_type": True,
                "version_table_schema": "inventory",
            },
        )
        assert compare_metadata(context, Base.metadata) == []
