"""Notifications' tests' helpers: customer events on the broker, the group run until it has
caught up, and what it wrote (notifications, mails)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from notifications_service.models import Mail, Notification
from notifications_service.notifications import GROUP, STREAMS
from shopkit.events.consumer import Consumer
from tests.support.events import caught_up, publish

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
