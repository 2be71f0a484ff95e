"""Consumers: each event's effect commits exactly once, however often it is delivered.

A :class:`Consumer` is one member of a consumer group (one group per
consuming service and purpose, for example ``notifications``) reading one or
more streams. Per batch of entries it:

1. opens one database transaction, inserts the events' ids into the
   service's ``inbox`` table (``(consumer_group, event_id)`` is unique) and
   runs the handler only for the ids that were new, so a redelivered or
   twice-published event is a no-op;
2. commits the handlers' effects and the inbox rows together;
3. only then acknowledges the entries (``XACK``).

A crash before the commit leaves the entries pending: they are delivered
again (to this consumer when it comes back, or claimed by another one after
``claim_after_ms``) and applied then. A crash after the commit but before
the ``XACK`` delivers them again too, and the inbox turns that into a no-op.

If the batch's transaction fails, each entry is retried in a transaction of
its own, so one bad event does not hold back the others. A handler too slow
for the database (its statement cancelled at the sessions' ``statement_timeout``,
or at ``db_timeout_ms`` when set) fails like one that raises; only a database
that is away leaves the whole batch pending while the consumer backs off. An
entry whose handler fails stays pending and is retried after a back-off that doubles
with each delivery (``retry_base_ms``, 2x, 4x ... up to ``retry_max_ms``);
after ``max_attempts`` deliveries it moves to the group's dead-letter stream
(:mod:`shopkit.events.deadletters`) with its last error, and is acknowledged.
New entries keep flowing meanwhile: a poison event never blocks the stream.

Retries and dead consumers are handled with ``XPENDING`` (which reports each
entry's idle time and delivery count) and ``XCLAIM`` rather than
``XAUTOCLAIM``: ``XAUTOCLAIM`` claims every entry idle longer than one
threshold, which leaves no room for a back-off that grows with the number of
deliveries, nor for telling a crashed consumer's entries (claim after
``claim_after_ms``) from this consumer's own failures (retry after the back-off).

A new group starts at the beginning of each stream (id ``0``), so a consumer
added later catches up on every event still retained (see
:data:`shopkit.events.relay.DEFAULT_RETENTION_S`).

Live faults (:mod:`shopkit.faults`) reach a consumer: a ``broker`` fault on
``consume`` delays or fails its reads and its acknowledgements, and the crash
points ``apply`` (the handler ran, nothing committed) and ``commit`` (committed,
not acknowledged) end the process at those moments.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from sqlalchemy import Column, DateTime, MetaData, String, Table, delete, func, select, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from shopkit import faults
from shopkit.db import local_statement_timeout, statement_too_slow
from shopkit.events import pruning
from shopkit.events.catalog import dead_letter_stream, replay_stream
from shopkit.events.envelope import (
    FIELD,
    Event,
    MalformedEvent,
    consumer_batch_span,
    consumer_span,
    decode,
)
from shopkit.events.metrics import EVENTS_CONSUMED
from shopkit.events.outbox import qualified
from shopkit.events.relay import DEFAULT_RETENTION_S, call_timeout_s
from shopkit.events.streams import as_text, observe_group

log = logging.getLogger(__name__)

Handler = Callable[[Session, Event], None]
#: Applies a batch's new events at once (one statement for many), in stream order.
BatchHandler = Callable[[Session, list[Event]], None]
DEFAULT_INBOX = "inbox"
MAX_ERROR_CHARS = 2000
#: Pages of the pending list one reclaim round reads per stream, at most.
MAX_PENDING_PAGES = 10
#: Statements cancelled at their timeout after which a round of applying one by one ends
#: (see ``Consumer._apply_one_by_one``).
TIMEOUTS_PER_PASS = 2


def inbox_table(metadata: MetaData, name: str = DEFAULT_INBOX) -> Table:
    """Add the inbox table (the events each group applied) to ``metadata`` and return it."""
    return Table(
        name,
        metadata,
        Column("consumer_group", String(100), primary_key=True),
        Column("event_id", UUID(as_uuid=True), primary_key=True),
        Column("type", String(128), nullable=False),
        Column("stream", String(128), nullable=False),
        Column("entry_id", String(40), nullable=False),
        Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def prune_inbox_rows(
    session: Session, inbox: Table, group: str, older_than_s: float, limit: int
) -> int:
    """Delete at most ``limit`` of ``group``'s inbox rows applied more than ``older_than_s``
    seconds ago; how many went."""
    column = inbox.c
    old = (
        select(column.event_id)
        .where(
            column.consumer_group == group,
            column.applied_at < func.now() - timedelta(seconds=older_than_s),
        )
        .limit(limit)
    )
    deleted = session.execute(
        delete(inbox).where(
            column.consumer_group == group, column.event_id.in_(old.scalar_subquery())
        )
    )
    return int(deleted.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ConsumerSettings:
    """How a consumer batches, retries, gives up and bounds its calls."""

    batch_size: int = 100
    #: How long one XREADGROUP waits for new entries (keep it below the client's socket timeout).
    block_ms: int = 1000
    #: Another consumer's pending entry is claimed once it is idle this long (its owner died).
    claim_after_ms: int = 30_000
    retry_base_ms: int = 2_000
    retry_max_ms: int = 300_000
    #: Deliveries before an event goes to the dead letters.
    max_attempts: int = 8
    #: A statement bound for the consumer's transactions (``SET LOCAL``, a round trip per
    #: batch); ``None`` keeps the sessions' own (a :class:`~shopkit.db.Database`'s 5 s).
    db_timeout_ms: int | None = None
    lag_every_s: float = 5.0
    backoff_max_s: float = 10.0
    #: Inbox rows are kept this long: twice the streams' retention, longer than any copy of
    #: an applied event can still be delivered (whole trimmed nodes outlive the retention).
    inbox_keep_s: float = 2 * DEFAULT_RETENTION_S
    #: How often each member prunes its group's inbox, while idle (0: whenever idle).
    inbox_prune_interval_s: float = 3600.0
    #: Inbox rows deleted per pruning transaction.
    inbox_prune_batch: int = 5000


@dataclass
class Entry:
    """One stream entry delivered to this consumer."""

    stream: str
    entry_id: str
    raw: bytes | None

    @property
    def key(self) -> str:
        """The entry's key in the group's error hash (``stream/entry id``)."""
        return f"{self.stream}/{self.entry_id}"


def errors_key(group: str) -> str:
    """The hash keeping the last error of each of ``group``'s failing entries."""
    return f"events:errors:{group}"


def default_consumer_name() -> str:
    """This process's name within its groups (host and pid: unique while it lives)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Consumer:
    """One member of consumer group ``group`` applying its handler to ``streams``' events.

    ``handler(session, event)`` is called once per new event; ``batch_handler(session,
    events)`` once per batch with all of its new events, for handlers that write
    many rows in one statement. Either runs inside the batch's transaction and
    must not commit.
    """

    def __init__(
        self,
        broker: redis.Redis,
        sessions: Callable[[], Session],
        inbox: Table,
        *,
        group: str,
        streams: Sequence[str],
        handler: Handler | None = None,
        batch_handler: BatchHandler | None = None,
        name: str | None = None,
        settings: ConsumerSettings | None = None,
    ) -> None:
        self.broker = broker
        self.sessions = sessions
        self.inbox = inbox
        self.group = group
        self.streams = [*streams, replay_stream(group)]
        if (handler is None) == (batch_handler is None):
            raise ValueError("give a consumer either a handler or a batch_handler")
        self.handler = handler
        self.batch_handler = batch_handler
        self.name = name or default_consumer_name()
        self.settings = settings or ConsumerSettings()
        self._reclaimed_at = 0.0
        self._observed_at = 0.0
        self._pruning = pruning.Schedule(f"group {group}")

    # -- setup ---------------------------------------------------------------------------

    def ensure_groups(self) -> None:
        """Create the group on each stream (from its first entry) unless it exists."""
        for stream in self.streams:
            try:
                self.broker.xgroup_create(stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    # -- one round -----------------------------------------------------------------------

    def poll(self) -> int:
        """Handle one batch: due retries and orphans first, else new entries; how many."""
        faults.before_broker("consume", call_timeout_s(self.broker))
        entries: list[Entry] = []
        now = time.monotonic()
        if (now - self._reclaimed_at) * 1000 >= self.settings.retry_base_ms / 2:
            self._reclaimed_at = now
            entries = self.reclaim()
        if not entries:
            entries = self._read_new()
        if entries:
            self.process(entries)
        return len(entries)

    def _read_new(self) -> list[Entry]:
        replies: Any = self.broker.xreadgroup(
            self.group,
            self.name,
            dict.fromkeys(self.streams, ">"),
            count=self.settings.batch_size,
            block=self.settings.block_ms,
        )
        entries = []
        for stream, messages in replies or []:
            name = as_text(stream)
            entries += [Entry(name, as_text(entry_id), fields.get(FIELD.encode()))
                        for entry_id, fields in messages]  # fmt: skip
        return entries

    def reclaim(self) -> list[Entry]:
        """Claim the pending entries that are due again; dead-letter those out of attempts.

        Due means idle for the back-off of its delivery count, and, when another
        consumer holds it, also for ``claim_after_ms`` (that consumer may be alive
        and still working on it).
        """
        claimed: list[Entry] = []
        for stream in self.streams:
            due = self._due(stream)
            if due:
                messages: Any = self.broker.xclaim(
                    stream, self.group, self.name, self.settings.retry_base_ms, due
                )
                claimed += [Entry(stream, as_text(entry_id), (fields or {}).get(FIELD.encode()))
                            for entry_id, fields in messages]  # fmt: skip
        return claimed

    def _due(self, stream: str) -> list[Any]:
        """Up to a batch of ``stream``'s pending entries due for a retry (dead-lettering some).

        Pages through the pending list, so entries another live consumer is still
        working on cannot hide this consumer's due ones behind them (bounded by
        :data:`MAX_PENDING_PAGES` pages per round).
        """
        due: list[Any] = []  # entry ids (redis-py types them loosely)
        start = "-"
        for _ in range(MAX_PENDING_PAGES):
            pending: Any = self.broker.xpending_range(
                stream,
                self.group,
                min=start,
                max="+",
                count=self.settings.batch_size,
                idle=self.settings.retry_base_ms,
            )
            for item in pending:
                entry_id = as_text(item["message_id"])
                deliveries = int(item["times_delivered"])
                wait_ms = self._backoff_ms(deliveries)
                if as_text(item["consumer"]) != self.name:
                    wait_ms = max(wait_ms, self.settings.claim_after_ms)
                if int(item["time_since_delivered"]) < wait_ms:
                    continue
                if deliveries >= self.settings.max_attempts:
                    self.dead_letter(Entry(stream, entry_id, None), deliveries)
                else:
                    due.append(entry_id)
            if len(pending) < self.settings.batch_size or len(due) >= self.settings.batch_size:
                break
            start = f"({as_text(pending[-1]['message_id'])}"
        return due[: self.settings.batch_size]

    def _backoff_ms(self, deliveries: int) -> int:
        exponent = max(deliveries - 1, 0)
        return int(
            min(self.settings.retry_base_ms * 2 ** min(exponent, 30), self.settings.retry_max_ms)
        )

    # -- applying ------------------------------------------------------------------------

    def process(self, entries: Sequence[Entry]) -> None:
        """Apply ``entries`` (one transaction, else one each), then acknowledge the applied ones."""
        readable: list[tuple[Entry, Event]] = []
        for entry in entries:
            try:
                if entry.raw is None:
                    raise MalformedEvent(f"the entry has no {FIELD!r} field")
                readable.append((entry, decode(entry.raw)))
            except MalformedEvent as error:
                # It can never be read, so retrying is pointless.
                self.dead_letter(entry, 1, error=str(error))
        if not readable:
            return
        try:
            outcomes = self._apply(readable)
        except OperationalError as error:
            if not statement_too_slow(error):
                raise  # the database is away: the whole batch stays pending; run() backs off
            log.info(
                "group %s: batch of %d too slow; applying one by one", self.group, len(readable)
            )
        except Exception:  # one handler's bug must not stop the batch
            log.info("group %s: batch of %d failed; applying one by one", self.group, len(readable))
        else:
            # Outside the try: a broker error on acknowledging is no handler's failure; the
            # committed entries stay pending, are delivered again and are no-ops then.
            self._ack([entry for entry, _ in readable], outcomes)
            return
        self._apply_one_by_one(readable)

    def _apply_one_by_one(self, readable: Sequence[tuple[Entry, Event]]) -> None:
        """Apply and acknowledge each entry alone; record the failure of those that fail.

        An event whose statement the server cancels at its timeout fails like one whose
        handler raises: retried with back-off, dead-lettered in the end, while its
        batch-mates are applied. The entries that have not failed before go first, and
        the pass ends after :data:`TIMEOUTS_PER_PASS` timeouts (the rest stay pending for
        a later round), so a round spends a bounded time waiting on slow statements.
        """
        failed_before = self.broker.hmget(errors_key(self.group), [e.key for e, _ in readable])
        order = sorted(range(len(readable)), key=lambda index: failed_before[index] is not None)
        timeouts = 0
        for pair in (readable[index] for index in order):
            try:
                outcomes = self._apply([pair])
            except OperationalError as error:
                if not statement_too_slow(error):
                    raise  # the database is away: the rest stays pending; run() backs off
                self._record_failure(pair[0], pair[1], error)
                timeouts += 1
                if timeouts >= TIMEOUTS_PER_PASS:
                    return
                continue
            except Exception as error:
                self._record_failure(pair[0], pair[1], error)
                continue
            self._ack([pair[0]], outcomes)

    def _apply(self, pairs: Sequence[tuple[Entry, Event]]) -> dict[str, int]:
        # The batch's span opens before its session, so that the session's statements (the
        # inbox rows, the handler's) are traced beneath it (Database.sessions), and the span
        # lasts until the commit.
        with (
            consumer_batch_span([event for _, event in pairs], self.group),
            self.sessions() as session,
            session.begin(),
        ):
            local_statement_timeout(session, self.settings.db_timeout_ms)
            fresh = self._record_in_inbox(session, pairs)
            todo = []
            for _entry, event in pairs:
                if event.id in fresh:
                    fresh.discard(event.id)  # the same event twice in one batch applies once
                    todo.append(event)
            if self.batch_handler is not None:
                if todo:
                    self.batch_handler(session, todo)
            else:
                for event in todo:
                    with consumer_span(event, self.group):
                        self.handler(session, event)  # type: ignore[misc]
            faults.crash_point("apply")  # applied, not committed: rolled back, delivered again
        return {"applied": len(todo), "duplicate": len(pairs) - len(todo)}

    def _record_in_inbox(self, session: Session, pairs: Sequence[tuple[Entry, Event]]) -> set[str]:
        """Insert the events' inbox rows; the ids that were not there yet."""
        inserted = session.execute(
            text(
                f"""
                INSERT INTO {qualified(session, self.inbox)}
                    (consumer_group, event_id, type, stream, entry_id)
                SELECT :group, e.id, e.type, e.stream, e.entry_id
                FROM unnest(CAST(:ids AS uuid[]), CAST(:types AS text[]),
                            CAST(:streams AS text[]), CAST(:entries AS text[]))
                     AS e(id, type, stream, entry_id)
                ON CONFLICT DO NOTHING
                RETURNING event_id
                """  # noqa: S608 (the table name is ours, quoted)
            ),
            {
                "group": self.group,
                "ids": [event.id for _, event in pairs],
                "types": [event.type for _, event in pairs],
                "streams": [entry.stream for entry, _ in pairs],
                "entries": [entry.entry_id for entry, _ in pairs],
            },
        )
        return {str(event_id) for event_id in inserted.scalars()}

    def _ack(self, entries: Iterable[Entry], outcomes: dict[str, int]) -> None:
        faults.crash_point("commit")  # committed, not acknowledged: delivered again, a no-op
        faults.before_broker("consume", call_timeout_s(self.broker))
        by_stream: dict[str, list[str]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.entry_id)
        pipe = self.broker.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self.group, *ids)
        pipe.hdel(errors_key(self.group), *[entry.key for entry in entries])
        pipe.execute()
        for outcome, count in outcomes.items():
            if count:
                EVENTS_CONSUMED.labels(group=self.group, outcome=outcome).inc(count)

    def _record_failure(self, entry: Entry, event: Event, error: Exception) -> None:
        message = f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
        log.warning("group %s: %s %s failed: %s", self.group, event.type, event.id, message)
        self.broker.hset(errors_key(self.group), entry.key, message)
        EVENTS_CONSUMED.labels(group=self.group, outcome="failed").inc()

    def dead_letter(self, entry: Entry, deliveries: int, *, error: str | None = None) -> None:
        """Move ``entry`` to the group's dead letters with its last error, and acknowledge it."""
        raw: Any = entry.raw
        if raw is None:
            found: Any = self.broker.xrange(entry.stream, entry.entry_id, entry.entry_id, count=1)
            raw = found[0][1].get(FIELD.encode(), b"") if found else b""
        reason = error or as_text(self.broker.hget(errors_key(self.group), entry.key) or b"")
        if not reason:
            reason = f"no success in {deliveries} deliveries (the consumer may have crashed)"
        pipe = self.broker.pipeline(transaction=True)  # MULTI: moved and acknowledged, or neither
        pipe.xadd(
            dead_letter_stream(self.group),
            {
                FIELD: raw or b"",
                "stream": entry.stream,
                "entry_id": entry.entry_id,
                "error": reason,
                "attempts": str(deliveries),
                "failed_at": f"{time.time():.3f}",
            },
        )
        pipe.xack(entry.stream, self.group, entry.entry_id)
        pipe.hdel(errors_key(self.group), entry.key)
        pipe.execute()
        log.error("group %s: dead-lettered %s (%s)", self.group, entry.key, reason)
        EVENTS_CONSUMED.labels(group=self.group, outcome="dead_lettered").inc()

    # -- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set, backing off while the broker or database is away."""
        backoff = 0.1
        ready = False
        while not stop.is_set():
            try:
                if not ready:
                    self.ensure_groups()
                    ready = True
                if self.poll() < self.settings.batch_size:  # idle: nothing more to read now
                    self._pruning.run_when_due(
                        self.settings.inbox_prune_interval_s, self.prune_inbox
                    )
                if time.monotonic() - self._observed_at >= self.settings.lag_every_s:
                    self._observed_at = time.monotonic()
                    observe_group(self.broker, self.group, self.streams)
                backoff = 0.1
            except (redis.RedisError, SQLAlchemyError) as error:
                if isinstance(error, redis.ResponseError) and "NOGROUP" in str(error):
                    # The broker lost the group (restarted without its data, or emptied):
                    # create it again, from the start of what the stream still holds.
                    ready = False
                log.warning("group %s: %s; retrying in %.1fs", self.group, error, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, self.settings.backoff_max_s)
            except Exception:  # a bug must not silently end the thread that consumes
                log.exception("group %s: unexpected error; retrying in %.1fs", self.group, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, self.settings.backoff_max_s)

    def prune_inbox(self) -> int:
        """Delete this group's inbox rows applied more than ``inbox_keep_s`` ago,
        ``inbox_prune_batch`` per transaction until none is left; how many went.

        A row is what makes a redelivery of its event a no-op, so it must outlive every
        copy of the event that may still be delivered (:meth:`inbox_keep_s`;
        docs/events.rst, "How long events are kept").
        """
        keep_s, batch = self.inbox_keep_s(), self.settings.inbox_prune_batch
        return pruning.in_chunks(
            self.sessions,
            lambda session: prune_inbox_rows(session, self.inbox, self.group, keep_s, batch),
            batch=batch,
            timeout_ms=self.settings.db_timeout_ms,
        )

    def inbox_keep_s(self) -> float:
        """How long inbox rows are kept now: ``inbox_keep_s``, plus the age of the group's
        oldest dead letter while one waits.

        A dead letter may be a second copy of an event that was applied (published twice,
        and failing the same way each time): replayed, it must still find the first copy's
        row. So while a dead letter waits, no row from ``inbox_keep_s`` before it goes.
        Raises ``redis.RedisError`` when the broker cannot be asked.
        """
        oldest = self.broker.xrange(dead_letter_stream(self.group), count=1)
        if not oldest:
            return self.settings.inbox_keep_s
        dead_at_s = int(as_text(oldest[0][0]).split("-", 1)[0]) / 1000
        return self.settings.inbox_keep_s + max(0.0, time.time() - dead_at_s)

    def start_thread(self) -> tuple[threading.Thread, threading.Event]:
        """Run :meth:`run` in a daemon thread; set the returned event to stop it."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self.run, args=(stop,), name=f"consumer-{self.group}", daemon=True
        )
        thread.start()
        return thread, stop
