"""``python -m seeder events``: dead letters listed, replayed and discarded over a real service.

The notifications service runs as a gunicorn process on a real broker; its
consumer group (in this process) dead-letters two unreadable entries at once,
and the CLI reaches them through ``/admin/events`` only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from click.testing import CliRunner, Result
from sqlalchemy import text

from devstack import mailsink
from notifications_service import mailer
from notifications_service.notifications import GROUP
from notifications_service.worker import build_consumer, make_sessions
from seeder.cli import cli
from shopkit.events.catalog import dead_letter_stream, replay_stream, stream_for
from shopkit.events.envelope import FIELD
from shopkit.registry import SERVICE_NAMES
from tests.support.broker import connected, emptied
from tests.support.events import drain, on_broker, wait_for
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, customer_payload
from tests.support.notifications import dead_lettered
from tests.support.reviews import once_purchase_known

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def events_stack(live_stack: Any, broker: Any) -> Iterator[Any]:
    """Every service on an emptied broker, for this module only.

    The broker is emptied before they start and never while they run: a consumer
    group deleted under a running member is not created again.
    """
    emptied(broker.url)
    with on_broker(live_stack, SERVICE_NAMES, broker.url):
        yield live_stack


@pytest.fixture
def streams(events_stack: Any, broker: Any) -> Iterator[redis.Redis]:
    """A client on the broker, with earlier tests' dead letters gone, and the notifications
    group's replays (no member of it runs in the services, so its group there can go too).

    Reviews' group reads the order stream in the reviews service's workers: it
    dead-letters the unreadable entries these tests publish as well.
    """
    with connected(broker.url) as client:
        client.delete(replay_stream(GROUP), *client.keys(dead_letter_stream("*")))
        yield client


@pytest.fixture
def run(events_stack: Any) -> Any:
    """``run(*args)``: the seeder in-process against the services on the broker."""
    env = {
        **{f"{name.upper()}_URL": events_stack.url(name) for name in SERVICE_NAMES},
        "ADMIN_USERNAME": ADMIN_USERNAME,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "COLUMNS": "200",
    }

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=env, prog_name="python -m seeder")

    return invoke


def test_dead_letters_are_listed_replayed_and_discarded(
    run: Any,
    streams: redis.Redis,
    database_url: str,
    broker: Any,
) -> None:
    first, second = dead_lettered(database_url, broker.url, 2)

    listed = run("events", "dead-letters", "--service", "notifications", "list")
    assert listed.exit_code == 0, listed.output
    assert first in listed.output and second in listed.output and "2 dead letters." in listed.output
    assert "not a CloudEvent" in listed.output and "notifications" in listed.output
    everywhere = run("events", "dead-letters", "list")  # every group of every service
    assert everywhere.exit_code == 0 and first in everywhere.output

    # Found in its service's groups (other groups' ids may be the same entry ids).
    replayed = run("events", "dead-letters", "--service", "notifications", "replay", first)
    assert replayed.exit_code == 0, replayed.output
    assert f"Dead letter {first} of notifications/{GROUP} replayed" in replayed.output
    assert streams.xlen(replay_stream(GROUP)) == 1  # handed back to this group only

    scoped = ("events", "dead-letters", "--service", "notifications", "--group", GROUP)
    discarded = run(*scoped, "discard", second)
    assert discarded.exit_code == 0, discarded.output
    assert streams.xlen(dead_letter_stream(GROUP)) == 0

    after = run("events", "dead-letters", "--service", "notifications", "list")
    assert after.exit_code == 0 and "0 dead letters." in after.output

    status = run("events", "status", "--service", "notifications")
    assert status.exit_code == 0, status.output
    assert "notifications" in status.output and "events:order" in status.output


def test_an_unknown_dead_letter_is_a_clear_error(
    run: Any,
    streams: redis.Redis,
    database_url: str,
    broker: Any,
) -> None:
    dead_lettered(database_url, broker.url, 1)
    missing = run("events", "dead-letters", "discard", "1-0")
    assert missing.exit_code == 1
    assert "No dead letter 1-0 in any consumer group" in missing.output
    scoped = run("events", "dead-letters", "--service", "notifications", "--group", GROUP,
                 "replay", "1-0")  # fmt: skip
    assert scoped.exit_code == 1 and "no dead letter 1-0" in scoped.output
    assert streams.xlen(dead_letter_stream(GROUP)) == 1  # nothing changed


def _admin_events(live_stack: Any, service: str) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {live_stack.token(ADMIN_USERNAME, ADMIN_PASSWORD)}"}
    answer = requests.get(live_stack.url(service) + "/admin/events", headers=admin, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _buy_and_review(live_stack: Any) -> int:
    """A product, a customer who tops up, buys it and reviews it, approved: order, wallet,
    review and product events. The product's id."""
    admin = {"Authorization": f"Bearer {live_stack.token(ADMIN_USERNAME, ADMIN_PASSWORD)}"}
    product = {"name": "Tide Table", "category": "accessories", "price": "6.00", "stock": 5}
    created = requests.post(live_stack.url("inventory") + "/products", json=product,
                            headers=admin, timeout=10)  # fmt: skip
    assert created.status_code == 201, created.text
    product_id = int(created.json()["id"])
    account = customer_payload()
    assert requests.post(live_stack.url("customers") + "/customers", json=account,
                         timeout=10).status_code == 201  # fmt: skip
    buyer = {
        "Authorization": f"Bearer {live_stack.token(account['username'], account['password'])}"
    }
    topped = requests.post(live_stack.url("customers") + f"/customers/{account['username']}/wallet/charge",
                           json={"amount": "20.00"}, headers=buyer, timeout=10)  # fmt: skip
    assert topped.status_code == 200, topped.text
    sale = requests.post(live_stack.url("sales") + "/sales", headers=buyer, timeout=30,
                         json={"product_id": product_id, "quantity": 1})  # fmt: skip
    assert sale.status_code == 201, sale.text
    # Reviews learns the purchase from the order events, a moment after it.
    review = once_purchase_known(lambda: requests.post(
        live_stack.url("reviews") + "/reviews", headers=buyer, timeout=10,
        json={"product_id": product_id, "rating": 4, "comment": "Handy."}),
        timeout_s=30)  # fmt: skip
    assert review.status_code == 201, review.text
    approved = requests.post(live_stack.url("reviews") + f"/reviews/{review.json()['id']}/moderation",
                             json={"action": "approve"}, headers=admin, timeout=10)  # fmt: skip
    assert approved.status_code == 200, approved.text

    def rated() -> bool:  # once inventory applied the approval
        answer = requests.get(live_stack.url("inventory") + f"/products/{product_id}", timeout=10)
        return bool(answer.json()["rating"]["count"] == 1)

    wait_for(rated, timeout_s=30)
    return product_id


def test_the_audit_checks_the_events_of_real_services(
    run: Any, live_stack: Any, streams: redis.Redis, database_url: str, broker: Any, tmp_path: Path
) -> None:
    product_id = _buy_and_review(live_stack)

    def published() -> bool:
        return all(_admin_events(live_stack, s)["outbox"]["unpublished"] == 0
                   for s in ("sales", "customers", "inventory", "reviews"))  # fmt: skip

    wait_for(published, timeout_s=30)  # each service's relay publishes its outbox
    consumer = build_consumer(database_url, broker.url)
    consumer.ensure_groups()
    events = sum(_admin_events(live_stack, s)["outbox"]["total"] for s in ("sales", "customers"))
    assert events >= 4  # placed, completed; credited, debited
    drain(consumer, until=lambda: _admin_events(live_stack, "notifications")["groups"][0]["inbox"]
          == events)  # fmt: skip
    sink = mailsink.start(tmp_path / "mail")
    try:
        sessions = make_sessions(database_url)
        mailer.send_due(sessions, mailer.SmtpTarget.from_url(sink.url), "Shop <shop@localhost>")
        assert len(sink.mails()) == 2  # one per order event
    finally:
        sink.stop()

    clean = run("audit", "--events-margin", "0")
    assert clean.exit_code == 0, clean.output
    assert "every published event is applied by each group that reads its stream" in clean.output
    assert "each applied event made its effects exactly once" in clean.output
    assert "inventory's ratings equal the approved reviews'" in clean.output
    assert "reviews' verified purchases equal the paid orders'" in clean.output
    assert "Audit passed" in clean.output

    # A poison entry lands in the dead letters; an order event the group never applied.
    streams.xadd(stream_for("order"), {FIELD: b"{broken"})
    drain(consumer, until=lambda: streams.xlen(dead_letter_stream(GROUP)) == 1)
    with make_sessions(database_url)() as session, session.begin():
        session.execute(
            text("DELETE FROM notifications.inbox WHERE type = 'shop.order.completed.v1'")
        )
        session.execute(text("UPDATE inventory.products SET rating_count = 2, rating_sum = 9 "
                             "WHERE id = :id"), {"id": product_id})  # fmt: skip
        session.execute(text("DELETE FROM reviews.purchase_lines"))
    failed = run("audit", "--events-margin", "0")
    assert failed.exit_code == 1, failed.output
    assert "violations: no dead letters" in failed.output
    assert "violations: every published event is applied" in failed.output
    assert "shop.order.completed.v1" in failed.output and "never applied" in failed.output
    assert f"product {product_id}: rated 4.50 from 2 reviews, 1 approved" in failed.output
    assert f"bought product {product_id}" in failed.output
    assert "not a verified purchase" in failed.output
