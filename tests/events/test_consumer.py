"""Consumers: each event applied once, poison events dead-lettered, late groups catch up."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update

from shopkit.events import deadletters
from shopkit.events.catalog import dead_letter_stream, stream_for
from shopkit.events.consumer import errors_key
from shopkit.events.envelope import FIELD, Event, decode
from shopkit.events.metrics import CONSUMER_LAG_ENTRIES, DEAD_LETTERS, EVENTS_CONSUMED
from shopkit.events.streams import describe, observe_group
from tests.events import tables
from tests.support.events import caught_up, drain, pending_by, sample

ORDERS = stream_for("order")


def _pending(valkey, group: str) -> int:
    return int(valkey.xpending(ORDERS, group)["pending"])


def test_each_published_event_is_applied_once(
    relay, emit_orders, make_consumer, effects, valkey
) -> None:
    emitted = emit_orders(30, [str(uuid.uuid4()) for _ in range(4)])
    relay.publish_once()
    consumer = make_consumer("audit", [ORDERS])
    drain(consumer, until=lambda: len(effects("audit")) == 30)
    assert effects("audit") == dict.fromkeys(emitted, 1)
    assert _pending(valkey, "audit") == 0


def test_the_same_event_published_twice_is_applied_once(
    relay, emit_orders, make_consumer, effects, valkey
) -> None:
    [event_id] = emit_orders(1)
    relay.publish_once()
    [(_, fields)] = valkey.xrange(ORDERS)
    valkey.xadd(ORDERS, fields)  # forced: the very same event a second time
    later = emit_orders(1)
    relay.publish_once()
    consumer = make_consumer("audit", [ORDERS])
    drain(
        consumer,
        until=caught_up(valkey, "audit", [ORDERS]),
    )
    assert effects("audit") == {event_id: 1, later[0]: 1}
    duplicates = sample(
        EVENTS_CONSUMED, "shop_events_consumed_total", group="audit", outcome="duplicate"
    )
    assert duplicates is not None and duplicates >= 1


def test_two_groups_each_apply_every_event_once(relay, emit_orders, make_consumer, effects) -> None:
    emitted = emit_orders(10)
    relay.publish_once()
    for group in ("notifications", "reviews"):
        consumer = make_consumer(group, [ORDERS])
        drain(consumer, until=lambda g=group: len(effects(g)) == 10)
        assert effects(group) == dict.fromkeys(emitted, 1)


def test_a_late_group_catches_up_from_the_start(relay, emit_orders, make_consumer, effects) -> None:
    early = make_consumer("early", [ORDERS])
    first = emit_orders(5)
    relay.publish_once()
    drain(early, until=lambda: len(effects("early")) == 5)
    second = emit_orders(5)
    relay.publish_once()
    late = make_consumer("late", [ORDERS])  # created after ten events were published
    drain(late, until=lambda: len(effects("late")) == 10)
    assert effects("late") == dict.fromkeys(first + second, 1)


def test_a_poison_event_is_dead_lettered_while_later_events_flow(
    relay, emit_orders, make_consumer, effects, valkey
) -> None:
    orders = [str(uuid.uuid4()) for _ in range(3)]
    poison_order = orders[0]
    fixed = False
    record = tables.record_effect("picky")

    def handler(session, event: Event) -> None:
        if event.subject == poison_order and not fixed:
            raise ValueError("cannot handle this order")
        record(session, event)

    emitted = emit_orders(9, orders)  # order 0 gets events 0, 3, 6
    poisoned = {emitted[0], emitted[3], emitted[6]}
    relay.publish_once()
    consumer = make_consumer("picky", [ORDERS], handler=handler)
    drain(consumer, until=lambda: valkey.xlen(dead_letter_stream("picky")) == 3)
    # Everything else was applied, once, while the poison was retried.
    assert effects("picky") == {e: 1 for e in emitted if e not in poisoned}
    assert _pending(valkey, "picky") == 0
    assert valkey.hlen(errors_key("picky")) == 0
    more = emit_orders(2, orders[1:])
    relay.publish_once()
    drain(consumer, until=lambda: len(effects("picky")) == 8)

    letters = deadletters.list_dead_letters(valkey, "picky")
    assert {letter.event_id for letter in letters} == poisoned
    for letter in letters:
        assert letter.attempts == 3
        assert "ValueError: cannot handle this order" in letter.error
        assert letter.stream == ORDERS
        assert letter.type == "shop.order.delivered.v1"

    fixed = True
    for letter in letters:
        deadletters.replay(valkey, "picky", letter.id)
    assert deadletters.count_dead_letters(valkey, "picky") == 0
    drain(consumer, until=lambda: len(effects("picky")) == 11)
    assert effects("picky") == dict.fromkeys(emitted + more, 1)
    with pytest.raises(deadletters.DeadLetterNotFound):
        deadletters.replay(valkey, "picky", letters[0].id)


def test_replaying_an_already_applied_event_changes_nothing(
    relay, emit_orders, make_consumer, effects, valkey
) -> None:
    [event_id] = emit_orders(1)
    relay.publish_once()
    consumer = make_consumer("audit", [ORDERS])
    drain(consumer, until=lambda: len(effects("audit")) == 1)
    [(entry_id, fields)] = valkey.xrange(ORDERS)
    # As if it had been dead-lettered after its effect committed (crashes before each ack).
    valkey.xadd(dead_letter_stream("audit"), {FIELD: fields[FIELD.encode()], "stream": ORDERS,
                                               "entry_id": entry_id, "error": "crash", "attempts": "3",
                                               "failed_at": "0"})  # fmt: skip
    [letter] = deadletters.list_dead_letters(valkey, "audit")
    deadletters.replay(valkey, "audit", letter.id)
    drain(consumer, until=caught_up(valkey, "audit", [stream_for("replay:audit")]))
    assert effects("audit") == {event_id: 1}


def test_dead_letters_can_be_discarded(valkey) -> None:
    dead_id = valkey.xadd(dead_letter_stream("g"), {FIELD: b"{}", "stream": ORDERS, "entry_id": "1-1",
                                                    "error": "boom", "attempts": "8", "failed_at": "1"})  # fmt: skip
    letter = deadletters.discard(valkey, "g", dead_id.decode())
    assert letter.error == "boom"
    assert deadletters.list_dead_letters(valkey, "g") == []
    with pytest.raises(deadletters.DeadLetterNotFound):
        deadletters.discard(valkey, "g", dead_id.decode())


def test_an_unreadable_entry_goes_straight_to_the_dead_letters(
    relay, emit_orders, make_consumer, effects, valkey
) -> None:
    valkey.xadd(ORDERS, {FIELD: b"not json"})
    valkey.xadd(ORDERS, {"other": b"field"})
    emitted = emit_orders(2)
    relay.publish_once()
    consumer = make_consumer("audit", [ORDERS])
    drain(consumer, until=lambda: len(effects("audit")) == 2)
    assert effects("audit") == dict.fromkeys(emitted, 1)
    letters = deadletters.list_dead_letters(valkey, "audit")
    assert len(letters) == 2
    assert all(letter.attempts == 1 and letter.error for letter in letters)
    assert _pending(valkey, "audit") == 0


def test_lag_in_entries_and_seconds(relay, emit_orders, make_consumer, valkey) -> None:
    consumer = make_consumer("slow", [ORDERS])
    emit_orders(4)
    relay.publish_once()
    time.sleep(0.2)
    [lag] = observe_group(valkey, "slow", [ORDERS])
    assert lag.lag_entries == 4
    assert lag.lag_seconds >= 0.2
    assert (
        sample(CONSUMER_LAG_ENTRIES, "shop_consumer_lag_entries", group="slow", stream=ORDERS) == 4
    )
    drain(consumer, until=lambda: describe(valkey, ORDERS).groups[0].pending == 0
          and describe(valkey, ORDERS).groups[0].lag_entries == 0)  # fmt: skip
    info = describe(valkey, ORDERS)
    assert info.length == 4
    assert info.groups[0].lag_seconds == 0.0
    observe_group(valkey, "slow", [ORDERS])
    assert sample(DEAD_LETTERS, "shop_dead_letters", group="slow") == 0


def test_one_groups_lag_is_computed_without_the_other_groups(
    relay, emit_orders, make_consumer, valkey
) -> None:
    emit_orders(3)
    relay.publish_once()
    assert len(make_consumer("reader", [ORDERS])._read_new()) == 3  # read, not acknowledged
    make_consumer("idle", [ORDERS])
    calls: list[str] = []

    class Noting:
        """The real client, noting the commands sent through it."""

        def __getattr__(self, name: str):
            calls.append(name)
            return getattr(valkey, name)

    info = describe(Noting(), ORDERS, group="idle")
    assert [(lag.group, lag.pending, lag.lag_entries) for lag in info.groups] == [("idle", 0, 3)]
    assert "xpending" not in calls, "the reader's pending entries were looked at"
    everyone = describe(valkey, ORDERS)
    assert {(lag.group, lag.pending) for lag in everyone.groups} == {("reader", 3), ("idle", 0)}


def test_a_batch_handler_applies_each_new_event_once_and_survives_a_poison_one(
    relay, emit_orders, make_consumer, effects, valkey
) -> None:
    emitted = emit_orders(6, [str(uuid.uuid4()) for _ in range(6)])
    relay.publish_once()
    [(_, fields), *_] = valkey.xrange(ORDERS)
    valkey.xadd(ORDERS, fields)  # the first event a second time, in the same batch
    record = tables.record_effect("batched")
    batches: list[int] = []

    def apply(session, events: list[Event]) -> None:
        if any(event.id == emitted[2] for event in events):
            raise ValueError("poison")
        batches.append(len(events))
        for event in events:
            record(session, event)

    consumer = make_consumer("batched", [ORDERS], batch_handler=apply)
    drain(consumer, until=lambda: valkey.xlen(dead_letter_stream("batched")) == 1)
    assert effects("batched") == {e: 1 for e in emitted if e != emitted[2]}
    # The whole batch failed once, then each entry went alone.
    assert batches and max(batches) == 1
    [letter] = deadletters.list_dead_letters(valkey, "batched")
    assert letter.event_id == emitted[2] and "poison" in letter.error


def test_own_due_retries_are_found_behind_another_consumers_in_flight_entries(
    relay, emit_orders, make_consumer, effects, valkey
) -> None:
    """A live consumer's long batch fills the first pages of the pending list."""
    emit_orders(12)
    relay.publish_once()
    failing = True
    record = tables.record_effect("paged")

    def handler(session, event: Event) -> None:
        if failing:
            raise ValueError("not yet")
        record(session, event)

    mine = make_consumer("paged", [ORDERS], handler=handler, batch_size=5, claim_after_ms=60_000)
    # Another member takes the first ten entries and keeps working on them.
    valkey.xreadgroup("paged", "busy", {ORDERS: ">"}, count=10)
    mine.poll()  # reads the last two; their handler fails, they stay pending
    assert pending_by(valkey, "paged") == {"busy": 10, "tester": 2}
    failing = False
    time.sleep(0.25)  # past the first back-off (100 ms)
    claimed = mine.reclaim()
    assert len(claimed) == 2, "the due retries behind the busy consumer's entries were missed"
    mine.process(claimed)
    assert len(effects("paged")) == 2
    assert pending_by(valkey, "paged") == {"busy": 10}


def test_a_group_the_broker_lost_is_created_again(
    relay, emit_orders, make_consumer, effects, valkey
) -> None:
    consumer = make_consumer("kept", [ORDERS])
    thread, stop = consumer.start_thread()
    try:
        first = emit_orders(3)
        relay.publish_once()
        deadline = time.monotonic() + 10
        while len(effects("kept")) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        valkey.flushall()  # a broker restarted without its data: streams and groups gone
        second = emit_orders(3)
        relay.publish_once()
        while len(effects("kept")) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(5)
    assert effects("kept") == dict.fromkeys(first + second, 1)


def _inbox_of(db_engine, group: str) -> set[str]:
    with db_engine.connect() as conn:
        found = conn.execute(
            select(tables.inbox.c.event_id).where(tables.inbox.c.consumer_group == group)
        )
        return {str(event_id) for event_id in found.scalars()}


def _age(db_engine, event_ids: list[str], hours: float) -> None:
    """Make the inbox rows of ``event_ids`` (every group's) ``hours`` old."""
    with db_engine.begin() as conn:
        conn.execute(
            update(tables.inbox)
            .where(tables.inbox.c.event_id.in_([uuid.UUID(e) for e in event_ids]))
            .values(applied_at=func.now() - timedelta(hours=hours))
        )


def test_a_group_prunes_only_its_own_inbox_rows_older_than_it_keeps_them(
    relay, emit_orders, make_consumer, effects, db_engine
) -> None:
    emitted = emit_orders(4)
    relay.publish_once()
    keeper = make_consumer("keeper", [ORDERS], inbox_keep_s=3600, inbox_prune_batch=1)
    other = make_consumer("other", [ORDERS])
    drain(keeper, until=lambda: len(effects("keeper")) == 4)
    drain(other, until=lambda: len(effects("other")) == 4)
    _age(db_engine, emitted[:3], hours=2)
    assert keeper.prune_inbox() == 3  # one row per transaction, until none is left
    assert _inbox_of(db_engine, "keeper") == {emitted[3]}  # younger than an hour: kept
    assert _inbox_of(db_engine, "other") == set(emitted)  # another group's rows: not its own


def test_a_consumer_prunes_its_inbox_when_idle(
    relay, emit_orders, make_consumer, effects, db_engine
) -> None:
    emitted = emit_orders(3)
    relay.publish_once()
    consumer = make_consumer(
        "tidy", [ORDERS], inbox_keep_s=3600, inbox_prune_interval_s=0, block_ms=50
    )
    drain(consumer, until=lambda: len(effects("tidy")) == 3)
    _age(db_engine, emitted[:2], hours=2)
    thread, stop = consumer.start_thread()
    try:
        deadline = time.monotonic() + 20
        while _inbox_of(db_engine, "tidy") != {emitted[2]} and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert _inbox_of(db_engine, "tidy") == {emitted[2]}
    assert effects("tidy") == dict.fromkeys(emitted, 1)  # pruning undid no effect


def test_while_a_dead_letter_waits_no_inbox_row_from_before_it_is_pruned(
    relay, emit_orders, make_consumer, effects, db_engine, valkey
) -> None:
    """A dead letter may be a second copy of an applied event: replayed, it must still find
    the first copy's inbox row."""
    emitted = emit_orders(2)
    relay.publish_once()
    consumer = make_consumer("careful", [ORDERS], inbox_keep_s=3600)
    drain(consumer, until=lambda: len(effects("careful")) == 2)
    _age(db_engine, emitted, hours=2)
    three_hours_ago_ms = int((time.time() - 3 * 3600) * 1000)
    valkey.xadd(dead_letter_stream("careful"), {"error": "x"}, id=f"{three_hours_ago_ms}-0")
    assert 4 * 3600 - 60 < consumer.inbox_keep_s() < 4 * 3600 + 60
    assert consumer.prune_inbox() == 0
    valkey.delete(dead_letter_stream("careful"))  # replayed or discarded
    assert consumer.inbox_keep_s() == 3600
    assert consumer.prune_inbox() == 2


def _too_slow_for(slow_orders: set[str], record):
    """A handler whose statement for the orders in ``slow_orders`` outlasts the timeout."""

    def handler(session, event: Event) -> None:
        if event.subject in slow_orders:
            session.execute(text("SELECT pg_sleep(5)"))  # cancelled at db_timeout_ms
        record(session, event)

    return handler


def test_an_event_too_slow_to_apply_is_dead_lettered_and_holds_no_other_back(
    relay, emit_orders, make_consumer, effects, valkey
) -> None:
    """A statement the server cancels at its timeout is that event's failure, not a database
    away: its batch-mates are applied, and it goes to the dead letters after its attempts."""
    orders = [str(uuid.uuid4()) for _ in range(3)]
    handler = _too_slow_for({orders[0]}, tables.record_effect("patient"))
    emitted = emit_orders(6, orders)  # order 0 gets events 0 and 3
    slow = {emitted[0], emitted[3]}
    relay.publish_once()
    consumer = make_consumer("patient", [ORDERS], handler=handler, db_timeout_ms=1000)
    consumer.poll()  # the batch times out; alone: 0 times out, 1 and 2 are applied, 3 times out
    assert effects("patient") == dict.fromkeys(emitted[1:3], 1)
    drain(consumer, until=lambda: valkey.xlen(dead_letter_stream("patient")) == 2)
    assert effects("patient") == {e: 1 for e in emitted if e not in slow}
    assert _pending(valkey, "patient") == 0
    letters = deadletters.list_dead_letters(valkey, "patient")
    assert {letter.event_id for letter in letters} == slow
    for letter in letters:
        assert letter.attempts == 3
        assert "statement timeout" in letter.error


def test_a_round_spends_at_most_two_timeouts_and_tries_the_untried_first(
    relay, emit_orders, make_consumer, effects, valkey
) -> None:
    """Three slow events first in the batch: the round stops after two timeouts, leaving the
    rest pending; the next round applies the events that never failed before the third
    slow one, so no fast event is dead-lettered for sitting behind slow ones."""
    orders = [str(uuid.uuid4()) for _ in range(5)]
    handler = _too_slow_for(set(orders[:3]), tables.record_effect("wary"))
    emitted = emit_orders(5, orders)  # events 0, 1 and 2 are slow, 3 and 4 are not
    relay.publish_once()
    consumer = make_consumer("wary", [ORDERS], handler=handler, db_timeout_ms=1000)
    consumer.poll()  # the batch, then events 0 and 1 alone: two timeouts, the round ends
    assert effects("wary") == {}
    assert set(_errors(valkey, "wary")) == set(emitted[:2])
    assert _pending(valkey, "wary") == 5
    drain(consumer, until=lambda: len(effects("wary")) == 2)
    assert effects("wary") == dict.fromkeys(emitted[3:], 1)
    drain(consumer, until=lambda: valkey.xlen(dead_letter_stream("wary")) == 3)
    letters = deadletters.list_dead_letters(valkey, "wary")
    assert {letter.event_id for letter in letters} == set(emitted[:3])
    assert all("statement timeout" in letter.error for letter in letters)
    assert effects("wary") == dict.fromkeys(emitted[3:], 1)
    assert _pending(valkey, "wary") == 0


def _errors(valkey, group: str) -> list[str]:
    """The event ids whose last failure the group recorded."""
    keys = [key.decode() for key in valkey.hkeys(errors_key(group))]
    ids = []
    for stream, entry_id in (key.rsplit("/", 1) for key in keys):
        [(_, fields)] = valkey.xrange(stream, entry_id, entry_id)
        ids.append(decode(fields[FIELD.encode()]).id)
    return ids
