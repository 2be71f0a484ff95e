"""The outbox and the relay: nothing rolled back is published, order per aggregate holds."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections import defaultdict

import pytest
import redis
from sqlalchemy import Engine, func, select, text

from shopkit.events.catalog import UnknownEventType, stream_for, validate_data
from shopkit.events.envelope import FIELD, decode
from shopkit.events.outbox import NewEvent, backlog, emit, emit_many, prune
from shopkit.events.relay import Relay, RelaySettings, broker_client
from tests.events import tables
from tests.support.database import broker as embedded_broker

ORDERS = stream_for("order")


def _stream_events(valkey: redis.Redis, stream: str = ORDERS) -> list:
    return [decode(fields[FIELD.encode()]) for _, fields in valkey.xrange(stream)]


def test_a_rolled_back_transaction_publishes_nothing(sessions, relay, valkey) -> None:
    kept = str(uuid.uuid4())
    with sessions() as session, session.begin():
        emit(session, tables.outbox, "shop.order.placed.v1", kept, _placed(kept))
    with sessions() as session:
        session.begin()
        gone = str(uuid.uuid4())
        emit(session, tables.outbox, "shop.order.placed.v1", gone, _placed(gone))
        session.rollback()
    while relay.publish_once():
        pass
    published = _stream_events(valkey)
    assert [event.subject for event in published] == [kept]
    assert published[0].type == "shop.order.placed.v1"
    assert published[0].source == "/test"
    validate_data(published[0].type, published[0].data)


def test_relay_marks_rows_and_does_not_publish_them_again(
    sessions, relay, valkey, emit_orders
) -> None:
    emit_orders(5)
    assert relay.publish_once() == 5
    assert relay.publish_once() == 0
    assert valkey.xlen(ORDERS) == 5
    with sessions() as session:
        assert backlog(session, tables.outbox) == 0
        marked = session.execute(
            select(tables.outbox.c.published_at, tables.outbox.c.attempts)
        ).all()
    assert all(published_at is not None and attempts == 1 for published_at, attempts in marked)


def test_an_unknown_event_type_writes_nothing(sessions) -> None:
    with sessions() as session, session.begin(), pytest.raises(UnknownEventType):
        emit(session, tables.outbox, "shop.order.teleported.v1", "x", {})
    with sessions() as session:
        assert backlog(session, tables.outbox) == 0


def test_a_batch_gets_consecutive_sequences_per_aggregate(sessions, relay, valkey) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    with sessions() as session, session.begin():
        emit(session, tables.outbox, "shop.order.placed.v1", first, _placed(first))
    events = [
        NewEvent("shop.order.completed.v1", first, {"order_id": first, "customer_id": 1, "total": "3.00"}),
        NewEvent("shop.order.placed.v1", second, _placed(second)),
        NewEvent("shop.order.shipped.v1", first, {"order_id": first, "customer_id": 1, "carrier": "DHL", "tracking_number": "T1"}),
    ]  # fmt: skip
    with sessions() as session, session.begin():
        ids = emit_many(session, tables.outbox, events)
    assert len(set(ids)) == 3
    relay.publish_once()
    published = _stream_events(valkey)
    assert [(e.subject, e.sequence, e.type) for e in published] == [
        (first, 1, "shop.order.placed.v1"),
        (first, 2, "shop.order.completed.v1"),
        (second, 1, "shop.order.placed.v1"),
        (first, 3, "shop.order.shipped.v1"),
    ]
    assert [e.id for e in published[1:]] == [str(i) for i in ids]
    for event in published:
        validate_data(event.type, event.data)


def test_concurrent_transactions_publish_each_aggregate_in_commit_order(
    sessions, relay, valkey
) -> None:
    """Writers race on a few aggregates, holding their transactions open for random times."""
    aggregates = [str(uuid.uuid4()) for _ in range(3)]
    committed: dict[str, list[str]] = defaultdict(list)  # aggregate -> event ids in commit order
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(10):
                order_id = rng.choice(aggregates)
                with sessions() as session, session.begin():
                    # Take a transaction id early, as a service would with its own writes.
                    session.execute(text("SELECT pg_current_xact_id()"))
                    time.sleep(rng.random() * 0.01)
                    event_id = emit(session, tables.outbox, "shop.order.delivered.v1", order_id,
                                    {"order_id": order_id, "customer_id": 1})  # fmt: skip
                    time.sleep(rng.random() * 0.01)
                    # Noted while the emit's lock on the aggregate is still held (until the
                    # commit): a note after the commit could come after the next writer's.
                    with lock:
                        committed[order_id].append(str(event_id))
                    session.commit()
        except BaseException as error:
            errors.append(error)

    # The relay publishes while the writers are still writing.
    stop = threading.Event()
    relay.settings = RelaySettings(batch_size=7, poll_interval_s=0.005)
    publisher = threading.Thread(target=relay.run, args=(stop,))
    publisher.start()
    writers = [threading.Thread(target=writer, args=(seed,)) for seed in range(6)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=60)
    deadline = time.monotonic() + 30
    while valkey.xlen(ORDERS) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    publisher.join(timeout=10)
    assert not errors, errors
    published: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for event in _stream_events(valkey):
        published[event.subject].append((event.id, event.sequence))
    assert sum(len(events) for events in published.values()) == 60
    for order_id, events in published.items():
        assert [event_id for event_id, _ in events] == committed[order_id]
        assert [sequence for _, sequence in events] == list(range(1, len(events) + 1))


def test_a_dead_broker_leaves_rows_unpublished_and_they_go_once_it_is_back(
    sessions, db_engine: Engine, emit_orders
) -> None:
    with embedded_broker.throwaway_broker() as own:
        client = broker_client(own.url, timeout_s=0.5)
        relay = Relay(db_engine, tables.outbox, client, service="test")
        emit_orders(3)
        own.kill()
        with pytest.raises(redis.RedisError):
            relay.publish_once()
        with sessions() as session:
            assert backlog(session, tables.outbox) == 3
            attempts = session.execute(
                select(tables.outbox.c.attempts, tables.outbox.c.last_error)
            ).all()
        assert all(n == 1 and error for n, error in attempts)
        restarted = embedded_broker.restart(own)
        try:
            assert relay.publish_once() == 3
            assert client.xlen(ORDERS) == 3
        finally:
            restarted.stop()


def test_only_one_relay_holds_the_lease(db_engine: Engine, valkey, sessions) -> None:
    first = Relay(db_engine, tables.outbox, valkey, service="test")
    second = Relay(db_engine, tables.outbox, valkey, service="test")
    try:
        assert first.try_lease()
        assert not second.try_lease()
        assert first.try_lease(), "the holder keeps it"
        first.release()
        assert second.try_lease()
    finally:
        first.release()
        second.release()


def test_publishing_trims_entries_older_than_the_retention(
    sessions, relay, valkey, emit_orders
) -> None:
    # 150 entries from 1970: the first internal node (100 entries) is wholly too old.
    for n in range(1, 151):
        valkey.xadd(ORDERS, {FIELD: b"old"}, id=f"1-{n}")
    emit_orders(1)
    relay.publish_once()
    remaining = valkey.xrange(ORDERS)
    assert remaining[0][0] != b"1-1", "the relay's MINID ~ trimmed nothing"
    assert len(remaining) < 151
    assert decode(remaining[-1][1][FIELD.encode()]).type == "shop.order.delivered.v1"


def test_prune_keeps_each_aggregates_newest_row_so_its_sequence_goes_on(
    sessions, relay, valkey
) -> None:
    """Pruning deletes old published rows but never an aggregate's newest: the next event
    of that order is numbered after it, not 1 again (which consumers would drop as old)."""
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    completed = {"order_id": first, "customer_id": 1, "total": "3.00"}
    with sessions() as session, session.begin():
        emit(session, tables.outbox, "shop.order.placed.v1", first, _placed(first))
        emit(session, tables.outbox, "shop.order.completed.v1", first, completed)
        emit(session, tables.outbox, "shop.order.placed.v1", second, _placed(second))
    assert relay.publish_once() == 3
    shipped = {"order_id": first, "customer_id": 1, "carrier": None, "tracking_number": None}
    with sessions() as session, session.begin():  # not published yet
        emit(session, tables.outbox, "shop.order.shipped.v1", first, shipped)

    def rows() -> set[tuple[str, int]]:
        with sessions() as session:
            found = session.execute(select(tables.outbox.c.aggregate_id, tables.outbox.c.sequence))
            return {(aggregate_id, sequence) for aggregate_id, sequence in found}

    with sessions() as session, session.begin():
        assert prune(session, tables.outbox, older_than_s=3600) == 0  # none published so long ago
    with sessions() as session, session.begin():
        assert prune(session, tables.outbox, older_than_s=0) == 2
    assert rows() == {(first, 3), (second, 1)}  # the unpublished row, and second's newest
    assert relay.publish_once() == 1
    with sessions() as session, session.begin():
        assert prune(session, tables.outbox, older_than_s=0) == 0  # each one's newest stays
    assert rows() == {(first, 3), (second, 1)}

    with sessions() as session, session.begin():
        delivered = {"order_id": first, "customer_id": 1}
        emit(session, tables.outbox, "shop.order.delivered.v1", first, delivered)
    assert relay.publish_once() == 1
    last = _stream_events(valkey)[-1]
    assert (last.subject, last.sequence, last.type) == (first, 4, "shop.order.delivered.v1")


def test_prune_takes_at_most_its_limit(sessions, relay, emit_orders) -> None:
    emit_orders(6, order_ids=[str(uuid.uuid4()) for _ in range(3)])  # two events per order
    assert relay.publish_once() == 6
    with sessions() as session, session.begin():
        assert prune(session, tables.outbox, older_than_s=0, limit=2) == 2
    with sessions() as session, session.begin():
        assert prune(session, tables.outbox, older_than_s=0, limit=2) == 1  # the third old one
    assert _outbox_rows(sessions) == 3  # each order's newest


@pytest.mark.parametrize(("keep_s", "left"), [(0, 3), (3600, 12)])
def test_the_relay_prunes_its_outbox_when_idle_in_chunks(
    sessions, relay, valkey, emit_orders, keep_s: float, left: int
) -> None:
    """The relay holding the lease prunes rows published longer ago than it keeps them, a
    chunk per transaction, once nothing is left to publish; younger rows stay."""
    orders = [str(uuid.uuid4()) for _ in range(3)]
    emit_orders(12, order_ids=orders)  # four events per order
    relay.settings = RelaySettings(
        poll_interval_s=0.01, keep_published_s=keep_s, prune_interval_s=0, prune_batch=2
    )
    stop = threading.Event()
    publisher = threading.Thread(target=relay.run, args=(stop,))
    publisher.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (
            valkey.xlen(ORDERS) < 12 or _outbox_rows(sessions) > left
        ):
            time.sleep(0.05)
        time.sleep(0.2)  # more idle rounds: nothing else goes
    finally:
        stop.set()
        publisher.join(timeout=10)
    assert valkey.xlen(ORDERS) == 12
    assert _outbox_rows(sessions) == left
    with sessions() as session:
        newest = session.execute(
            select(tables.outbox.c.aggregate_id, func.max(tables.outbox.c.sequence)).group_by(
                tables.outbox.c.aggregate_id
            )
        ).all()
    assert dict(newest) == dict.fromkeys(orders, 4)  # each order's newest row is always kept


def test_the_pause_between_polls_is_short_while_events_flow_and_longer_once_idle(
    relay,
) -> None:
    relay.settings = RelaySettings(poll_interval_s=0.05, idle_after_s=2, idle_poll_interval_s=0.25)
    assert relay.poll_pause_s(0) == 0.05
    assert relay.poll_pause_s(1.99) == 0.05
    assert relay.poll_pause_s(2) == 0.25
    assert relay.poll_pause_s(3600) == 0.25


def test_an_idle_relay_polls_less_and_an_event_brings_back_quick_polls(
    relay, valkey, emit_orders
) -> None:
    """Idle, the relay reads its outbox every ``idle_poll_interval_s``; an event is still
    published within about that long, and the relay then polls at once again."""
    relay.settings = RelaySettings(poll_interval_s=0.01, idle_after_s=0.3, idle_poll_interval_s=0.4)
    polls: list[float] = []
    read = relay._unpublished

    def counted() -> list:
        polls.append(time.monotonic())
        return read()

    relay._unpublished = counted  # type: ignore[method-assign]
    stop = threading.Event()
    publisher = threading.Thread(target=relay.run, args=(stop,))
    publisher.start()
    try:
        time.sleep(0.6)  # past idle_after_s
        idle_from = time.monotonic()
        time.sleep(1.2)
        idle_polls = sum(1 for at in polls if at >= idle_from)
        emit_orders(1)
        emitted_at = time.monotonic()
        deadline = emitted_at + 10
        while valkey.xlen(ORDERS) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        published_after = time.monotonic() - emitted_at
        busy_from = time.monotonic()
        time.sleep(0.5)
        busy_polls = sum(1 for at in polls if at >= busy_from)
    finally:
        stop.set()
        publisher.join(timeout=10)
    assert valkey.xlen(ORDERS) == 1
    assert idle_polls <= 5  # every 0.4 s: 3 in 1.2 s (at 0.01 s it would be about 100)
    assert published_after < 2  # at most one idle pause (0.4 s), with room for a busy machine
    assert busy_polls >= 5  # every 0.01 s again: about 50 in 0.5 s (a loaded machine may lag)


def _outbox_rows(sessions) -> int:
    with sessions() as session:
        return int(session.execute(select(func.count()).select_from(tables.outbox)).scalar_one())


def _placed(order_id: str) -> dict:
    return {
        "order_id": order_id,
        "customer_id": 1,
        "lines": [{"product_id": 1, "quantity": 1}],
    }


def test_a_frozen_broker_does_not_hold_the_relay(sessions, db_engine: Engine, emit_orders) -> None:
    with embedded_broker.throwaway_broker() as own:
        client = broker_client(own.url, timeout_s=0.5)
        relay = Relay(db_engine, tables.outbox, client, service="test")
        emitted = emit_orders(2)
        os.kill(own.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(redis.RedisError):
                relay.publish_once()
            assert time.monotonic() - started < 5, "the relay waited on a frozen broker"
        finally:
            os.kill(own.process.pid, signal.SIGCONT)
        assert relay.publish_once() == 2
        with sessions() as session:
            assert backlog(session, tables.outbox) == 0
        # The frozen server may still have run the first pipeline once thawed: at least once.
        assert {event.id for event in _stream_events(client)} == set(emitted)
