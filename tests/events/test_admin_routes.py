"""``/admin/events`` (shopkit.events.admin_routes) on real apps, a real broker and PostgreSQL.

The notifications app shows its group's lag, inbox and dead letters, and
replays or discards them; sales shows its outbox. Every refusal is a
problem document, and only admins get anywhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from customers_service.models import OUTBOX as WALLET_OUTBOX
from notifications_service.models import inbox
from notifications_service.notifications import GROUP, STREAMS
from notifications_service.worker import build_consumer, make_sessions
from shopkit.config import Settings
from shopkit.events.catalog import dead_letter_stream, stream_for
from shopkit.events.consumer import Consumer, ConsumerSettings
from shopkit.events.envelope import FIELD, Event
from shopkit.events.outbox import emit
from shopkit.registry import SERVICE_NAMES
from tests.support.database import free_port
from tests.support.events import caught_up, drain, publish
from tests.support.identity import Identity, bearer

PROBLEM = "application/problem+json"

#: This file relays the outbox itself (tests.conftest: no live relay of it meanwhile).
pytestmark = pytest.mark.sole_relay(*SERVICE_NAMES)


@pytest.fixture(scope="module")
def apps(
    make_settings: Callable[..., Settings], key_resolver: Any, broker: Any
) -> dict[str, Flask]:
    """Inventory, notifications and customers on the broker; notifications without one too."""
    from customers_service import create_app as customers_app
    from notifications_service import create_app as notifications_app

    def settings(service: str, **extra: Any) -> dict[str, Any]:
        return {"SETTINGS": make_settings(service, **extra), "KEY_RESOLVER": key_resolver,
                "TESTING": True}  # fmt: skip

    from inventory_service import create_app as inventory_app

    return {
        "inventory": inventory_app(settings("inventory", events_url=broker.url)),
        "notifications": notifications_app(settings("notifications", events_url=broker.url)),
        "customers": customers_app(settings("customers", events_url=broker.url)),
        "brokerless": notifications_app(settings("notifications", events_url="")),
    }


@pytest.fixture
def admin(identity: Identity) -> dict[str, str]:
    """The bootstrap admin's bearer header."""
    return bearer(identity.admin_token())


def _order(valkey: redis.Redis, customer_id: int = 51) -> str:
    data = {"order_id": str(uuid.uuid4()), "customer_id": customer_id, "total": "3.00"}
    return publish(valkey, "shop.order.completed.v1", data)


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    assert response.mimetype == PROBLEM
    return response.get_json()  # type: ignore[no-any-return]


def _poisoned(database_url: str, valkey: redis.Redis) -> Consumer:
    """The notifications group with a handler that always fails and gives up at once."""

    def broken(_session: Session, _events: list[Event]) -> None:
        raise RuntimeError("the template is broken")

    sessions: sessionmaker[Session] = make_sessions(database_url)
    return Consumer(valkey, sessions, inbox, group=GROUP, streams=STREAMS, batch_handler=broken,
                    settings=ConsumerSettings(block_ms=50, retry_base_ms=50, max_attempts=1))  # fmt: skip


def test_the_overview_shows_lag_inbox_effects_and_dead_letters(
    apps: dict[str, Flask], admin: dict[str, str], valkey: redis.Redis, broker: Any,
    database_url: str,
) -> None:  # fmt: skip
    client = apps["notifications"].test_client()
    applied = [_order(valkey), _order(valkey)]
    valkey.xadd(stream_for("order"), {FIELD: b"{not json"})  # dead-lettered at once
    consumer = build_consumer(database_url, broker.url)
    consumer.ensure_groups()
    read_all = caught_up(valkey, GROUP, [stream_for("order")], acknowledged=False)
    drain(consumer, until=lambda: valkey.xlen(dead_letter_stream(GROUP)) == 1 and read_all())
    waiting = _order(valkey)  # published after the consumer last read: lag 1

    body = client.get("/admin/events", headers=admin).get_json()
    assert body["service"] == "notifications" and body["outbox"] is None
    assert body["broker"] == {"configured": True, "available": True, "detail": None}
    [group] = body["groups"]
    assert group["group"] == GROUP and group["inbox"] == 2 and group["dead_letters"] == 1
    lag = {entry["stream"]: entry for entry in group["lag"]}
    assert lag["events:order"]["length"] == 4 and lag["events:order"]["lag_entries"] == 1
    assert lag["events:order"]["pending"] == 0 and lag["events:order"]["created"] is True
    assert lag["events:order"]["lag_seconds"] >= 0
    assert lag["events:wallet"]["length"] == 0
    streams = {s["stream"]: s for s in body["streams"]}
    assert streams["events:order"]["length"] == 4
    assert [g["group"] for g in streams["events:order"]["groups"]] == [GROUP]

    inbox_page = client.get("/admin/events/inbox", headers=admin).get_json()
    assert sorted(item["event_id"] for item in inbox_page["items"]) == sorted(applied)
    assert inbox_page["next_after"] is None
    for item in inbox_page["items"]:
        assert item["effects"] == {"notifications": 1, "mails": 1, "mails_unsent": 1}
    first = client.get("/admin/events/inbox?limit=1", headers=admin).get_json()
    assert len(first["items"]) == 1 and first["next_after"] == first["items"][0]["event_id"]
    second = client.get(f"/admin/events/inbox?limit=1&after={first['next_after']}",
                        headers=admin).get_json()  # fmt: skip
    assert {first["items"][0]["event_id"], second["items"][0]["event_id"]} == set(applied)

    letters = client.get("/admin/events/dead-letters", headers=admin).get_json()
    assert letters["total"] == 1 and letters["group"] == GROUP
    [letter] = letters["items"]
    assert letter["stream"] == "events:order" and letter["event_id"] is None
    assert letter["error"].startswith("not a CloudEvent")
    assert letter["event"] == "{not json" and letter["attempts"] == 1

    discarded = client.post(f"/admin/events/dead-letters/{letter['id']}/discard", headers=admin)
    assert discarded.status_code == 200 and discarded.get_json()["discarded"]["id"] == letter["id"]
    assert valkey.xlen(dead_letter_stream(GROUP)) == 0
    again = client.post(f"/admin/events/dead-letters/{letter['id']}/discard", headers=admin)
    assert _problem(again, 404)["code"] == "not_found"
    assert waiting not in {item["event_id"] for item in inbox_page["items"]}


def test_a_poison_event_replayed_once_fixed_is_applied_exactly_once(
    apps: dict[str, Flask], admin: dict[str, str], valkey: redis.Redis, broker: Any,
    database_url: str,
) -> None:  # fmt: skip
    client = apps["notifications"].test_client()
    event_id = _order(valkey, customer_id=52)
    broken = _poisoned(database_url, valkey)
    broken.ensure_groups()
    drain(broken, until=lambda: valkey.xlen(dead_letter_stream(GROUP)) == 1)
    [letter] = client.get("/admin/events/dead-letters", headers=admin).get_json()["items"]
    assert letter["event_id"] == event_id and letter["type"] == "shop.order.completed.v1"
    assert "the template is broken" in letter["error"]

    replayed = client.post(f"/admin/events/dead-letters/{letter['id']}/replay", headers=admin)
    assert replayed.status_code == 200, replayed.get_json()
    assert replayed.get_json()["id"] == letter["id"]
    twice = client.post(f"/admin/events/dead-letters/{letter['id']}/replay", headers=admin)
    assert _problem(twice, 404)["code"] == "not_found"

    fixed = build_consumer(database_url, broker.url)

    def applied() -> list[dict[str, Any]]:
        return client.get("/admin/events/inbox", headers=admin).get_json()["items"]  # type: ignore[no-any-return]

    drain(fixed, until=lambda: len(applied()) == 1)
    fixed.poll()  # nothing more arrives: the replay was applied once
    [item] = applied()
    assert item["event_id"] == event_id and item["stream"] == "events:replay:notifications"
    assert item["effects"]["notifications"] == 1 and item["effects"]["mails"] == 1
    overview = client.get("/admin/events", headers=admin).get_json()
    assert overview["groups"][0]["dead_letters"] == 0


def test_the_outbox_backlog_and_its_pages(
    apps: dict[str, Flask], admin: dict[str, str], valkey: redis.Redis, db_engine: Any
) -> None:
    client = apps["customers"].test_client()
    with Session(db_engine) as session, session.begin():
        ids = [str(emit(session, WALLET_OUTBOX, "shop.wallet.credited.v1", 9,
                        {"customer_id": 9, "amount": "1.00", "balance": f"{n}.00",
                         "order_id": None}))
               for n in range(1, 4)]  # fmt: skip
        session.execute(WALLET_OUTBOX.update().where(WALLET_OUTBOX.c.event_id == ids[0])
                        .values(published_at=datetime.now(UTC)))  # fmt: skip
    body = client.get("/admin/events", headers=admin).get_json()
    assert body["service"] == "customers" and body["groups"] == []
    assert body["outbox"]["total"] == 3 and body["outbox"]["unpublished"] == 2
    assert body["outbox"]["failing"] == 0 and body["outbox"]["oldest_unpublished_age_s"] >= 0
    assert [s["stream"] for s in body["streams"]] == ["events:wallet", "events:customer"]

    first = client.get("/admin/events/outbox?limit=2", headers=admin).get_json()
    assert [row["event_id"] for row in first["items"]] == ids[:2]
    assert first["items"][0]["published_at"] is not None
    assert first["items"][1]["published_at"] is None
    rest = client.get(f"/admin/events/outbox?limit=2&after={first['next_after']}",
                      headers=admin).get_json()  # fmt: skip
    assert [row["event_id"] for row in rest["items"]] == ids[2:] and rest["next_after"] is None
    # It runs no group: nothing to list, and it says so.
    assert _problem(client.get("/admin/events/dead-letters", headers=admin), 404)
    assert _problem(client.get("/admin/events/inbox", headers=admin), 404)


def test_a_service_that_emits_and_consumes_shows_both(
    apps: dict[str, Flask], admin: dict[str, str], valkey: redis.Redis
) -> None:
    body = apps["inventory"].test_client().get("/admin/events", headers=admin).get_json()
    assert body["service"] == "inventory" and body["outbox"]["unpublished"] == 0
    [group] = body["groups"]
    assert group["group"] == "inventory" and group["streams"] == ["events:review"]
    assert [lag["stream"] for lag in group["lag"]] == ["events:review", "events:replay:inventory"]
    assert group["lag"][0]["created"] is False  # no member has started here
    assert [s["stream"] for s in body["streams"]] == ["events:product", "events:review"]


def test_without_a_broker_the_overview_says_so_and_dead_letters_are_not_found(
    apps: dict[str, Flask], admin: dict[str, str]
) -> None:
    client = apps["brokerless"].test_client()
    body = client.get("/admin/events", headers=admin).get_json()
    assert body["broker"]["available"] is False and body["broker"]["configured"] is False
    assert "EVENTS_URL" in body["broker"]["detail"]
    assert body["groups"][0]["lag"] is None and body["groups"][0]["inbox"] == 0
    problem = _problem(client.get("/admin/events/dead-letters", headers=admin), 404)
    assert problem["code"] == "not_found" and "EVENTS_URL" in problem["detail"]
    replay = client.post("/admin/events/dead-letters/1-0/replay", headers=admin)
    assert "Events are off" in _problem(replay, 404)["detail"]


def test_a_broker_that_does_not_answer_is_a_503(
    make_settings: Callable[..., Settings], key_resolver: Any, admin: dict[str, str]
) -> None:
    from notifications_service import create_app

    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app = create_app({"SETTINGS": make_settings("notifications", events_url=closed),
                      "KEY_RESOLVER": key_resolver, "TESTING": True})  # fmt: skip
    client = app.test_client()
    body = client.get("/admin/events", headers=admin).get_json()
    assert body["broker"]["configured"] is True and body["broker"]["available"] is False
    assert body["groups"][0]["dead_letters"] is None
    problem = _problem(client.get("/admin/events/dead-letters", headers=admin), 503)
    assert problem["code"] == "dependency_unavailable" and problem["dependency"] == "broker"
    replay = client.post("/admin/events/dead-letters/1-0/discard", headers=admin)
    assert _problem(replay, 503)["dependency"] == "broker"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/admin/events/dead-letters?group=ratings", 404),
        ("GET", "/admin/events/inbox?group=ratings", 404),
        ("GET", "/admin/events/inbox?after=not-a-uuid", 422),
        ("GET", "/admin/events/inbox?limit=0", 422),
        ("GET", "/admin/events/dead-letters?after=abc", 422),
        ("GET", "/admin/events/outbox", 404),
        ("POST", "/admin/events/dead-letters/not-an-id/replay", 404),
        ("POST", "/admin/events/dead-letters/99-0/discard", 404),
        ("POST", "/admin/events/dead-letters/1-0/replay?group=ratings", 404),
    ],
)
def test_bad_requests_are_problems_that_change_nothing(
    apps: dict[str, Flask], admin: dict[str, str], valkey: redis.Redis,
    method: str, path: str, status: int,
) -> None:  # fmt: skip
    client = apps["notifications"].test_client()
    valkey.xadd(dead_letter_stream(GROUP), {FIELD: b"x", "error": "e", "attempts": "1"})
    _problem(client.open(path, method=method, headers=admin), status)
    assert valkey.xlen(dead_letter_stream(GROUP)) == 1


def test_only_admins(apps: dict[str, Flask], identity: Identity) -> None:
    client: FlaskClient = apps["notifications"].test_client()
    _, token = identity.new_customer()
    for method, path in [("GET", "/admin/events"), ("GET", "/admin/events/inbox"),
                         ("GET", "/admin/events/dead-letters"),
                         ("POST", "/admin/events/dead-letters/1-0/replay"),
                         ("POST", "/admin/events/dead-letters/1-0/discard")]:  # fmt: skip
        assert _problem(client.open(path, method=method), 401)["code"] == "unauthorized"
        refused = client.open(path, method=method, headers=bearer(token))
        assert _problem(refused, 403)["code"] == "forbidden"


def test_the_routes_are_in_the_openapi_document(apps: dict[str, Flask]) -> None:
    paths = apps["customers"].test_client().get("/openapi.json").get_json()["paths"]
    for path in ("/admin/events", "/admin/events/outbox", "/admin/events/inbox",
                 "/admin/events/dead-letters", "/admin/events/dead-letters/{dead_id}/replay",
                 "/admin/events/dead-letters/{dead_id}/discard"):  # fmt: skip
        assert path in paths, path
    replay = paths["/admin/events/dead-letters/{dead_id}/replay"]["post"]
    assert {"404", "503"} <= set(replay["responses"])
    assert replay["x-roles"] == ["admin"]
