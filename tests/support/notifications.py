"""Notifications' tests' helpers: customer events on the broker, the group run until it has
caught up, what it wrote (notifications, mails), and its worker beside a live stack."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from notifications_service.models import Mail, Notification
from notifications_service.notifications import GROUP, STREAMS
from notifications_service.worker import build_consumer
from shopkit.events.catalog import dead_letter_stream, stream_for
from shopkit.events.consumer import Consumer
from shopkit.events.envelope import FIELD
from tests.support.broker import connected
from tests.support.database import WorkerProcess
from tests.support.events import caught_up, drain, group_from_now, publish
from tests.support.live import LiveStack

#: The sender of the tests' mails.
SENDER = "Shop <shop@localhost>"


def customer_event(
    valkey: redis.Redis,
    customer_id: int,
    type_name: str = "registered",
    sequence: int = 1,
    full_name: str | None = None,
    email: str | None = None,
) -> str:
    """Publish a customer event about ``customer_id`` (its contact data if the type has it)."""
    data: dict[str, Any] = {"customer_id": customer_id}
    if type_name in ("registered", "updated"):
        data |= {
            "username": f"c{customer_id}",
            "full_name": full_name or f"Customer {customer_id}",
            "email": email or f"c{customer_id}@example.com",
        }
    return publish(valkey, f"shop.customer.{type_name}.v1", data, sequence)


def consume_until(
    consumer: Consumer, valkey: redis.Redis, until: Callable[[], bool], rounds: int = 30
) -> None:
    """Poll the notifications group's ``consumer`` until ``until()`` holds and it has read every
    entry of its streams (entries it is still retrying may stay pending); fail if ``until()``
    does not hold after ``rounds`` polls."""
    consumer.ensure_groups()
    read_all = caught_up(valkey, GROUP, STREAMS, acknowledged=False)
    for _ in range(rounds):
        if until() and read_all():
            return
        consumer.poll()
    assert until(), "the consumer did not get there"


def notified(db_engine: Engine, customer_id: int) -> int:
    """How many notifications ``customer_id`` has."""
    with db_engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(Notification)
                .where(Notification.customer_id == customer_id)
            ).scalar_one()
        )


def mails(db_engine: Engine) -> list[Mail]:
    """Every mail row, oldest first."""
    with Session(db_engine) as session:
        return list(session.execute(select(Mail).order_by(Mail.id)).scalars())


def dead_lettered(database_url: str, events_url: str, count: int) -> dict[str, str]:
    """``count`` unreadable order entries, dead-lettered at once by the notifications group;
    the ids of their dead letters (in stream order), each with its entry's id in the order
    stream."""
    with connected(events_url) as client:
        sent = set()
        for _ in range(count):
            entry_id: Any = client.xadd(stream_for("order"), {FIELD: b"{unreadable"})
            sent.add(entry_id.decode())

        def letters() -> dict[str, str]:
            entries: Any = client.xrange(dead_letter_stream(GROUP))
            return {
                dead_id.decode(): fields[b"entry_id"].decode()
                for dead_id, fields in entries
                if fields[b"entry_id"].decode() in sent
            }

        consumer = build_consumer(database_url, events_url)
        consumer.ensure_groups()
        drain(consumer, until=lambda: len(letters()) == count)
        return letters()


@contextmanager
def worker_from_now(
    stack: LiveStack, smtp_url: str, log: Path, **env: str
) -> Iterator[WorkerProcess]:
    """The notifications worker (its consumer group and mail sender) on ``stack``'s broker,
    mailing to ``smtp_url`` and logging to ``log``, for the block; stopped after.

    Its group starts at the end of the streams: the events earlier test files left on the
    session's broker are not its work, only what comes after.
    """
    assert stack.events_url, "the stack runs a broker"
    group_from_now(stack.events_url, GROUP, STREAMS)
    worker = WorkerProcess(
        "notifications-worker",
        "notifications_service.worker",
        env={**stack.env("notifications"), "SMTP_URL": smtp_url, **env},
        log=log.open("ab"),
    )
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
