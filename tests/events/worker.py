"""A relay or consumer in a process of its own, that kills itself (-9) at a chosen moment.

``python -m tests.events.worker relay|consume <crash point>`` with ``DATABASE_URL``
and ``EVENTS_URL`` set. The crash points are the worst moments for each:

- ``relay after-publish``: the events are in the stream, the rows not yet marked;
- ``consume before-commit``: the handler ran, its transaction is not committed;
- ``consume after-commit``: the effects and inbox rows are committed, nothing acknowledged.

The process sends itself ``SIGKILL``: no ``finally``, no atexit, no flush, like a
machine losing power under it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from shopkit.events.consumer import Consumer, ConsumerSettings
from shopkit.events.envelope import Event
from shopkit.events.relay import Relay, broker_client
from tests.events import tables


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class CrashingRelay(Relay):
    """Dies after its pipeline of XADDs succeeded, before marking the rows."""

    def _mark_published(self, ids: list[int]) -> None:
        if ids:
            _die()
        super()._mark_published(ids)


class CrashAfterCommit(Consumer):
    """Dies after its transaction committed, before acknowledging."""

    def _ack(self, entries, outcomes) -> None:  # type: ignore[no-untyped-def]
        _die()


def main() -> None:
    role, point = sys.argv[1], sys.argv[2]
    engine = create_engine(os.environ["DATABASE_URL"])
    broker = broker_client(os.environ["EVENTS_URL"])
    if role == "relay" and point == "after-publish":
        CrashingRelay(engine, tables.outbox, broker, service="test").publish_once()
        raise SystemExit("the relay published nothing")
    group = os.environ.get("SHOP_TEST_GROUP", "crashy")
    handler = tables.record_effect(group)
    if point == "before-commit":

        def handle(session: Session, event: Event) -> None:
            handler(session, event)
            session.flush()  # the effect is written, inside the open transaction
            _die()

        consumer_class: type[Consumer] = Consumer
    elif point == "after-commit":
        handle = handler
        consumer_class = CrashAfterCommit
    else:
        raise SystemExit(f"unknown crash point {point!r}")
    consumer = consumer_class(
        broker,
        sessionmaker(engine),
        tables.inbox,
        group=group,
        streams=os.environ["SHOP_TEST_STREAMS"].split(","),
        handler=handle,
        name="doomed",
        settings=ConsumerSettings(block_ms=200),
    )
    consumer.run(threading.Event())  # runs until the crash point kills the process


if __name__ == "__main__":
    main()
