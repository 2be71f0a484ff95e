"""The event tests' helpers: publish events as a relay would, drive a consumer until its group
has caught up, read its metrics and pending entries, wait, and start a live service on the
test broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import create_engine, text

from shopkit.events.catalog import replay_stream, stream_for, validate_data
from shopkit.events.consumer import Consumer, ConsumerSettings
from shopkit.events.envelope import FIELD, Event, decode, encode
from tests.support.broker import connected

#: Short timeouts so retries, claims and dead letters happen within a test.
FAST = ConsumerSettings(
    batch_size=50,
    block_ms=100,
    claim_after_ms=400,
    retry_base_ms=100,
    retry_max_ms=400,
    max_attempts=3,
    lag_every_s=0.0,
)


def new_event(
    type_name: str,
    data: dict[str, Any],
    *,
    sequence: int = 1,
    source: str = "/sales",
    subject: str | None = None,
) -> Event:
    """A fresh event of ``type_name`` (its data checked against the catalogue), about
    ``subject`` (by default the data's order, else its customer)."""
    validate_data(type_name, data)
    return Event(
        id=str(uuid.uuid4()),
        source=source,
        type=type_name,
        subject=subject or str(data.get("order_id") or data["customer_id"]),
        time=datetime.now(UTC),
        data=data,
        sequence=sequence,
    )


def append(client: redis.Redis, *events: Event) -> list[str]:
    """Append ``events`` (again, if they were already) each to its aggregate's stream, as the
    relay does; their entry ids."""
    entry_ids = []
    for event in events:
        entry_id: Any = client.xadd(stream_for(event.type.split(".")[1]), {FIELD: encode(event)})
        entry_ids.append(entry_id.decode())
    return entry_ids


def publish(client: redis.Redis, type_name: str, data: dict[str, Any], sequence: int = 1) -> str:
    """Append one new event of ``type_name`` with ``data`` to its stream; the event's id."""
    event = new_event(type_name, data, sequence=sequence)
    append(client, event)
    return event.id


def caught_up(
    client: redis.Redis, group: str, streams: Iterable[str], *, acknowledged: bool = True
) -> Callable[[], bool]:
    """Whether ``group`` has read every entry of each of ``streams`` (no lag) and, unless
    ``acknowledged`` is false, acknowledged them all (none pending)."""
    names = list(streams)

    def check() -> bool:
        for stream in names:
            found = next(g for g in client.xinfo_groups(stream) if g["name"].decode() == group)
            if found["lag"] or (acknowledged and found["pending"]):
                return False
        return True

    return check


def drain(consumer: Consumer, *, until: Callable[[], bool], rounds: int = 200) -> None:
    """Poll ``consumer`` until ``until()`` holds (each poll waits at most its block time)."""
    for _ in range(rounds):
        if until():
            return
        consumer.poll()
    assert until(), "the consumer did not get there"


def sample(metric: Any, name: str, **labels: str) -> float | None:
    """The current value of sample ``name`` with ``labels`` of a business metric (or None)."""
    for family in metric.metric.collect():
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


def pending_by(valkey: redis.Redis, group: str, stream: str = "events:order") -> dict[str, int]:
    """How many entries of ``stream`` each consumer of ``group`` holds unacknowledged."""
    summary: Any = valkey.xpending(stream, group)
    return {c["name"].decode(): int(c["pending"]) for c in summary["consumers"]}


def group_from_now(events_url: str, group: str, streams: Iterable[str]) -> None:
    """Start consumer ``group`` at the end (``$``) of each of ``streams`` and of its replay
    stream, creating it or moving it there: a worker started next reads only what comes
    after, not every event earlier test files left on the session's broker."""
    with connected(events_url, timeout_s=5) as client:
        for stream in (*streams, replay_stream(group)):
            try:
                client.xgroup_create(stream, group, id="$", mkstream=True)
            except redis.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise
                client.xgroup_setid(stream, group, id="$")


def outboxes_from_now(database_url: str, services: Iterable[str]) -> None:
    """Mark every row earlier test files left unpublished in ``services``' outboxes as
    published: relays started next publish only what comes after, as
    :func:`group_from_now` has a consumer read only what comes after."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            for service in services:
                conn.execute(
                    text(
                        f"UPDATE {service}.outbox SET published_at = now() WHERE published_at IS NULL"
                    )
                )
    finally:
        engine.dispose()


def start_with_broker(stack: Any, service: str, events_url: str, **options: Any) -> Any:
    """Start ``service`` of the live stack on the broker at ``events_url``.

    A process of the session already running without that broker (another test
    module started it) is restarted on it.
    """
    running = stack.processes.get(service)
    if running is not None and running.env.get("EVENTS_URL") != events_url:
        running.kill()
    extra = {**options.pop("extra_env", {}), "EVENTS_URL": events_url}
    return stack.start(service, extra_env=extra, **options)


@contextmanager
def on_broker(stack: Any, services: Iterable[str], events_url: str) -> Iterator[None]:
    """``services`` of the live stack running on the broker for the block, stopped after it.

    Their relays and consumers would otherwise go on publishing and consuming the
    test database's rows while later test modules of the session (which share the
    stack and the database) run relays of their own; those modules start the
    services again, without a broker, when they need them.
    """
    names = list(services)
    try:
        for service in names:
            start_with_broker(stack, service, events_url)
        yield
    finally:
        for service in names:
            running = stack.processes.get(service)
            if running is not None:
                running.stop()


def wait_for(condition: Callable[[], bool], *, timeout_s: float, every_s: float = 0.2) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not reached within {timeout_s:g} s"
        time.sleep(every_s)


def relay_everything(engine: Any, table: Any, broker: redis.Redis, service: str) -> None:
    """Publish every unpublished row of ``service``'s outbox ``table`` with a real relay
    (taking and then giving back the outbox's lease)."""
    from shopkit.events.relay import Relay

    relay = Relay(engine, table, broker, service=service)
    try:
        while relay.publish_once():
            pass
    finally:
        relay.release()


def published_by_subject(broker: redis.Redis, aggregate: str) -> dict[str, list[Any]]:
    """The events on ``aggregate``'s stream, decoded, grouped by subject in stream order."""
    by_subject: dict[str, list[Any]] = {}
    entries: Any = broker.xrange(stream_for(aggregate))
    for _entry_id, fields in entries:
        event = decode(fields[FIELD.encode()])
        by_subject.setdefault(event.subject, []).append(event)
    return by_subject
