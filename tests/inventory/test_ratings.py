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
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from inventory_service.models import INBOX, Base
from inventory_service.ratings import GROUP, STREAMS, apply_review_events, latest_states
from shopkit.config import Settings
from shopkit.events.catalog import stream_for
from shopkit.events.consumer import Consumer
from shopkit.events.envelope import Event
from shopkit.events.service_consumer import ServiceConsumer
from tests.support.database import broker as embedded_broker
from tests.support.database import schema_drift
from tests.support.events import FAST, append, caught_up, drain, new_event
from tests.support.products import product_payload

REVIEW = "shop.review.{}.v1"

#: This file relays the outbox itself (tests.conftest: no live relay of it meanwhile).
pytestmark = pytest.mark.sole_relay("inventory")


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
        return new_event(
            REVIEW.format(action),
            data,
            sequence=sequence,
            source="/reviews",
            subject=str(review_id),
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
        append(self.valkey, published)

    def new_review(self) -> int:
        """A fresh review id."""
        self.next_id += 1
        return self.next_id


@pytest.fixture
def reviews(valkey: redis.Redis) -> Reviews:
    """Review events onto the real broker."""
    return Reviews(valkey)


def member(app: Flask, client: redis.Redis, name: str, **settings: Any) -> Consumer:
    """A member of inventory's group as its workers run it (with the tests' short timeouts)."""
    made = Consumer(
        client,
        app.extensions["shop_db"].sessions,
        INBOX,
        group=GROUP,
        streams=STREAMS,
        batch_handler=apply_review_events,
        name=name,
        settings=dataclasses.replace(FAST, **settings),
    )
    made.ensure_groups()
    return made


def service_member(app: Flask, broker_url: str) -> ServiceConsumer:
    """The group's member as :func:`inventory_service.create_app` makes it, not started."""
    return ServiceConsumer(
        app.extensions["shop_db"].url,
        broker_url,
        INBOX,
        service="inventory",
        group=GROUP,
        streams=STREAMS,
        batch_handler=apply_review_events,
    )


@dataclasses.dataclass
class Ratings:
    """What a ratings test works with: products, review events, one member, the answers."""

    inventory: FlaskClient
    admin: dict[str, str]
    make_product: Callable[..., dict[str, Any]]
    reviews: Reviews
    consumer: Consumer
    valkey: redis.Redis

    def product(self, **fields: Any) -> int:
        """A new product's id."""
        return int(self.make_product(**fields)["id"])

    def settle(self) -> None:
        """Let the member apply every event published so far."""
        drain(self.consumer, until=caught_up(self.valkey, GROUP, STREAMS))

    def rating(self, product_id: int) -> dict[str, Any]:
        """The product's ``rating`` as its JSON shows it."""
        answer = self.inventory.get(f"/products/{product_id}", headers=self.admin)
        return answer.get_json()["rating"]  # type: ignore[no-any-return]


@pytest.fixture
def ratings(
    inventory_app: Flask,
    inventory: FlaskClient,
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    reviews: Reviews,
    valkey: redis.Redis,
) -> Ratings:
    """Products, review events and a member of the ``inventory`` group."""
    consumer = member(inventory_app, valkey, "inventory-test")
    return Ratings(inventory, admin, make_product, reviews, consumer, valkey)


def applied(db_engine: Engine) -> int:
    """How many events the ``inventory`` group recorded in its inbox."""
    with db_engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM inventory.inbox WHERE consumer_group = :g"), {"g": GROUP}
            ).scalar_one()
        )


def test_approvals_count_and_a_rejection_after_an_approval_uncounts(ratings: Ratings) -> None:
    lamp = ratings.product()
    first, second = ratings.reviews.new_review(), ratings.reviews.new_review()
    publish = ratings.reviews.publish
    steps: list[tuple[str, int, int, dict[str, Any]]] = [
        ("submitted", first, 5, {"average": None, "count": 0}),  # pending: not counted
        ("approved", first, 5, {"average": "5.00", "count": 1}),
        ("submitted", second, 4, {"average": "5.00", "count": 1}),
        ("approved", second, 4, {"average": "4.50", "count": 2}),
        ("rejected", first, 5, {"average": "4.00", "count": 1}),  # the moderator changed their mind
        ("rejected", first, 5, {"average": "4.00", "count": 1}),  # rejected again: no change
        ("approved", first, 5, {"average": "4.50", "count": 2}),  # approved once more
        ("submitted", second, 1, {"average": "5.00", "count": 1}),  # edited: pending, hidden
        ("approved", second, 1, {"average": "3.00", "count": 2}),  # with its new rating
        ("flagged", second, 1, {"average": "5.00", "count": 1}),  # hidden until decided again
        ("approved", second, 1, {"average": "3.00", "count": 2}),
        ("deleted", second, 1, {"average": "5.00", "count": 1}),
        ("rejected", first, 5, {"average": None, "count": 0}),
    ]
    for action, review, rating, expected in steps:
        publish(action, review, lamp, rating)
        ratings.settle()
        assert ratings.rating(lamp) == expected, (action, review)


def test_redelivered_and_duplicated_events_apply_once(ratings: Ratings, db_engine: Engine) -> None:
    product = ratings.product()
    published = [
        ratings.reviews.publish("approved", ratings.reviews.new_review(), product, rating)
        for rating in (5, 4, 2)
    ]
    ratings.reviews.send(published[0])  # the same event published twice (relay died unmarked)
    ratings.settle()
    assert ratings.rating(product) == {"average": "3.67", "count": 3}
    assert applied(db_engine) == 3

    # Every entry delivered once more, as after a crash between the commit and the ack.
    for stream in STREAMS:
        ratings.valkey.xgroup_setid(stream, GROUP, id="0")
    ratings.settle()
    assert ratings.rating(product) == {"average": "3.67", "count": 3}
    assert applied(db_engine) == 3


def test_an_older_event_arriving_late_never_overwrites_a_newer_state(ratings: Ratings) -> None:
    product = ratings.product()
    publish, new_review = ratings.reviews.publish, ratings.reviews.new_review
    kept, dropped, both = new_review(), new_review(), new_review()
    # Approved (2) arrives before its submission (1), e.g. the submission was retried.
    publish("approved", kept, product, 4, sequence=2)
    # Rejected (3) arrives before the approval (2) it follows.
    publish("rejected", dropped, product, 1, sequence=3)
    ratings.settle()
    publish("submitted", kept, product, 4, sequence=1)
    publish("approved", dropped, product, 1, sequence=2)
    # Within one batch too: the newest of a review's events wins whatever the order.
    publish("rejected", both, product, 2, sequence=3)
    publish("approved", both, product, 2, sequence=2)
    ratings.settle()
    assert ratings.rating(product) == {"average": "4.00", "count": 1}


def test_a_bad_review_event_never_holds_back_the_good_ones(ratings: Ratings) -> None:
    product = ratings.product()
    reviews, client = ratings.reviews, ratings.valkey
    bad = reviews.event("approved", reviews.new_review(), product, 5, sequence=1)
    reviews.send(dataclasses.replace(bad, data={**bad.data, "rating": 9}))  # out of range
    reviews.publish("approved", reviews.new_review(), product, 3)
    dead = f"events:dead:{GROUP}"
    done = caught_up(client, GROUP, STREAMS)
    drain(ratings.consumer, until=lambda: done() and client.xlen(dead) == 1, rounds=400)
    assert ratings.rating(product) == {"average": "3.00", "count": 1}
    [(_, fields)] = client.xrange(dead)
    assert b"rating_range" in fields[b"error"]  # the check constraint refused it


def test_a_review_event_without_a_sequence_cannot_be_ordered_so_it_fails(reviews: Reviews) -> None:
    event = reviews.event("approved", reviews.new_review(), 1, 5, sequence=1)
    with pytest.raises(ValueError, match="has no sequence"):
        latest_states([dataclasses.replace(event, sequence=None)])


def test_two_members_applying_one_products_reviews_at_once_count_each_once(
    inventory_app: Flask, ratings: Ratings
) -> None:
    products = [ratings.product() for _ in range(3)]
    given: dict[int, list[int]] = {product: [] for product in products}
    for n in range(60):
        product, rating = products[n % 3], 1 + n % 5
        ratings.reviews.publish("approved", ratings.reviews.new_review(), product, rating)
        given[product].append(rating)
    members = [member(inventory_app, ratings.valkey, f"member-{n}", batch_size=4) for n in (1, 2)]
    done = caught_up(ratings.valkey, GROUP, STREAMS)
    threads = [threading.Thread(target=drain, args=(m,), kwargs={"until": done}) for m in members]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert done()
    for product, found in given.items():
        expected = f"{sum(found) / len(found):.2f}"
        assert ratings.rating(product) == {"average": expected, "count": len(found)}


def test_a_batch_on_a_product_waits_for_the_uncommitted_batch_before_it(
    inventory_app: Flask, ratings: Ratings
) -> None:
    product = ratings.product()
    reviews = ratings.reviews
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
    assert ratings.rating(product) == {"average": "4.00", "count": 2}


def test_the_service_consumer_applies_events_in_its_own_thread(
    inventory_app: Flask,
    ratings: Ratings,
    broker: embedded_broker.Broker,
) -> None:
    product = ratings.product()
    running = service_member(inventory_app, broker.url)
    running.start()
    try:
        assert running.consumer.name.endswith(f"-{os.getpid()}")
        ratings.reviews.publish("approved", ratings.reviews.new_review(), product, 2)
        deadline = time.monotonic() + 10
        while ratings.rating(product)["count"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ratings.rating(product) == {"average": "2.00", "count": 1}
    finally:
        running.stop()
    assert not running.started


def _member_name(forked: ServiceConsumer, names: Any) -> None:
    forked.start()
    names.put(forked.consumer.name)
    forked.stop()


def test_each_forked_worker_joins_the_group_under_its_own_name(
    inventory_app: Flask,
    broker: embedded_broker.Broker,
) -> None:
    built = service_member(inventory_app, broker.url)  # before the fork, as under --preload
    forking = multiprocessing.get_context("fork")
    names = forking.Queue()
    workers = [forking.Process(target=_member_name, args=(built, names)) for _ in range(2)]
    for worker in workers:
        worker.start()
    found = {names.get(timeout=30) for _ in workers}
    for worker in workers:
        worker.join(30)
    host = built.consumer.name.rsplit("-", 1)[0]
    assert found == {f"{host}-{worker.pid}" for worker in workers}
    built.database.dispose()


def test_sort_by_rating_lists_the_best_rated_first_and_the_unrated_last(ratings: Ratings) -> None:
    unrated = ratings.product(name="Tea unrated")
    good = ratings.product(name="Tea good")
    best = ratings.product(name="Tea best")
    tied_few = ratings.product(name="Tea tied few")
    tied_many = ratings.product(name="Tea tied many")
    also_unrated = ratings.product(name="Tea also unrated")
    for product, given in {good: [4, 3], best: [5], tied_few: [4], tied_many: [4, 4, 4]}.items():
        for rating in given:
            ratings.reviews.publish("approved", ratings.reviews.new_review(), product, rating)
    ratings.settle()
    expected = [best, tied_many, tied_few, good, unrated, also_unrated]
    inventory = ratings.inventory

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
    assert schema_drift(db_engine, "inventory", Base.metadata) == []


def test_an_inventory_worker_runs_its_relay_and_its_member_from_its_first_request(
    make_settings: Callable[..., Settings],
    key_resolver: Any,
    admin: dict[str, str],
    reviews: Reviews,
    broker: embedded_broker.Broker,
    valkey: redis.Redis,
) -> None:
    from inventory_service import create_app

    app = create_app(
        {
            "SETTINGS": make_settings("inventory", events_url=broker.url),
            "KEY_RESOLVER": key_resolver,
        }
    )
    relay, member_ = app.extensions["shop_relay"], app.extensions["shop_consumers"][GROUP]
    assert not relay.started and not member_.started  # nothing before a request
    client = app.test_client()
    try:
        created = client.post("/products", json=product_payload(stock=2), headers=admin)
        assert created.status_code == 201
        assert relay.started and member_.started
        product = created.get_json()["id"]
        reviews.publish("approved", reviews.new_review(), product, 4)
        deadline = time.monotonic() + 15
        published: list[Any] = []
        while time.monotonic() < deadline:
            published = valkey.xrange(stream_for("product"))
            rating = client.get(f"/products/{product}").get_json()["rating"]
            if len(published) == 2 and rating["count"] == 1:
                break
            time.sleep(0.05)
        assert len(published) == 2  # created, and its initial stock
        assert client.get(f"/products/{product}").get_json()["rating"] == {
            "average": "4.00",
            "count": 1,
        }
    finally:
        relay.stop()
        member_.stop()
