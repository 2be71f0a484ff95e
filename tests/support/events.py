"""The event tests' helpers: drive a consumer, read its metrics and pending entries, wait, and
start a live service on the test broker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from shopkit.events.catalog import replay_stream
from shopkit.events.consumer import Consumer


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
    client = redis.Redis.from_url(events_url, socket_timeout=5)
    try:
        for stream in (*streams, replay_stream(group)):
            try:
                client.xgroup_create(stream, group, id="$", mkstream=True)
            except redis.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise
                client.xgroup_setid(stream, group, id="$")
    finally:
        client.close()


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
    from shopkit.events.catalog import stream_for
    from shopkit.events.envelope import FIELD, decode

    by_subject: dict[str, list[Any]] = {}
    for _entry_id, fields in broker.xrange(stream_for(aggregate)):
        event = decode(fields[FIELD.encode()])
        by_subject.setdefault(event.subject, []).append(event)
    return by_subject
