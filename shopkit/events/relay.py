"""The relay: publishes committed outbox rows to their streams, then marks them published.

One relay per outbox is active at a time. It holds a lease, a session-level
PostgreSQL advisory lock on a connection of its own: the lock goes away with
that connection, so a killed relay's lease is free as soon as PostgreSQL
notices the connection is gone, and several workers of one service can all
run :meth:`Relay.run` while only one publishes.

Each round reads up to ``batch_size`` unpublished rows in ``id`` order,
which per aggregate is commit order (:mod:`shopkit.events.outbox`), sends
them as one pipeline of ``XADD`` commands, and then marks the rows whose
``XADD`` succeeded, in one ``UPDATE``. Publishing and marking are two steps,
so the guarantee is at least once: a relay that dies between them publishes
the same rows again (same event ids) and consumers deduplicate. If an
``XADD`` fails, only the rows before it are marked; the rest count an attempt,
keep their error, and are tried again after a back-off that doubles up to
``backoff_max_s``.

Every broker and database call is bounded: the redis client has socket
timeouts, and the database connections a ``statement_timeout`` (the
:class:`~shopkit.db.Database`'s, or ``db_timeout_ms`` per transaction).

With tracing on, each batch sent is a producer span, ``<stream> publish``
(:func:`shopkit.events.envelope.publish_span`), linked to each of its events'
traces, with the batch's marking ``UPDATE`` beneath it; an idle poll makes none.

Live faults (:mod:`shopkit.faults`) reach the relay: a ``broker`` fault on
``publish`` delays or fails its ``XADD`` pipeline, and the crash point
``publish`` ends the process between publishing and marking.

Each ``XADD`` also trims its stream to ``retention_s`` (``MINID ~``): entries
older than that go, in whole internal nodes, so a stream keeps at least
``retention_s`` of events.

An idle relay still reads its outbox to find nothing, so once no event has
come for ``idle_after_s`` it polls five times less often
(``idle_poll_interval_s`` instead of ``poll_interval_s``): an idle shop's
relays cost a fifth of their busy polling (bench/README.md), and the first
event after a quiet spell waits at most ``idle_poll_interval_s``. While
events flow, the pause stays short, so the lag under load is unchanged.

The relay holding the lease also prunes its outbox
every ``prune_interval_s`` while it is idle: rows published more than
``keep_published_s`` ago go (:func:`shopkit.events.outbox.prune`, each
aggregate's newest row excepted), ``prune_batch`` rows per short transaction,
so that the table does not grow for ever and no statement runs long.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Integer,
    Table,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from shopkit import faults
from shopkit.db import advisory_key, local_statement_timeout
from shopkit.events import outbox, pruning
from shopkit.events.catalog import stream_for
from shopkit.events.envelope import FIELD, Event, encode, publish_span
from shopkit.events.metrics import EVENTS_PUBLISHED
from shopkit.telemetry import engine_for_current_span

log = logging.getLogger(__name__)

#: Events are kept at least this long in their stream (a late consumer group can catch up).
DEFAULT_RETENTION_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class RelaySettings:
    """How a relay batches, polls, backs off and bounds its calls."""

    batch_size: int = 500
    #: The pause between polls that found less than a batch, while events flow.
    poll_interval_s: float = 0.05
    #: Once no event has come for this long, the relay polls every ``idle_poll_interval_s``.
    idle_after_s: float = 2.0
    idle_poll_interval_s: float = 0.25
    retention_s: float = DEFAULT_RETENTION_S
    #: A statement bound for the relay's transactions (``SET LOCAL``, a round trip each);
    #: ``None`` keeps the engine's own (a :class:`~shopkit.db.Database`'s 5 s).
    db_timeout_ms: int | None = None
    backoff_base_s: float = 0.1
    backoff_max_s: float = 10.0
    lease_retry_s: float = 1.0
    #: Published rows stay this long (as long as their events stay in the stream, by default).
    keep_published_s: float = DEFAULT_RETENTION_S
    #: How often the relay holding the lease prunes (0: whenever it is idle).
    prune_interval_s: float = 3600.0
    #: Rows deleted per pruning transaction.
    prune_batch: int = 5000


def broker_client(url: str, *, timeout_s: float = 2.0) -> redis.Redis:
    """A redis-py client for ``url`` whose every call is bounded by ``timeout_s``."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
    )


def call_timeout_s(client: redis.Redis) -> float | None:
    """The socket timeout that bounds each of ``client``'s calls (``None``: unbounded)."""
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    return float(timeout) if timeout is not None else None


class Relay:
    """Publishes one service's outbox (``table``) to the broker."""

    def __init__(
        self,
        engine: Engine,
        table: Table,
        broker: redis.Redis,
        *,
        service: str,
        settings: RelaySettings | None = None,
    ) -> None:
        self.engine = engine
        self.table = table
        self.broker = broker
        self.service = service
        self.source = f"/{service}"
        self.settings = settings or RelaySettings()
        self._lease: Connection | None = None
        self._lease_checked_at = 0.0
        self._lease_key = advisory_key("outbox-relay", table.fullname)
        self._pruning = pruning.Schedule(f"relay for {service}")
        t = table.c
        # Built once: a relay reads its outbox 4 to 20 times a second, mostly to find nothing, and
        # building the statement was a quarter of that read's CPU (bench/README.md).
        self._unpublished_query = (
            select(
                t.id, t.event_id, t.aggregate, t.aggregate_id, t.sequence, t.type,
                t.payload, t.traceparent, t.created_at,
            )
            .where(t.published_at.is_(None))
            .order_by(t.id)
            .limit(bindparam("limit", type_=Integer))
        )  # fmt: skip
        # One array parameter: the statement is the same whatever the batch's size, and it is
        # built once too (building it each round was about a fifth of the relay's own CPU).
        self._mark_query = (
            table.update()
            .where(t.id == func.any(bindparam("ids", type_=ARRAY(BigInteger))))
            .values(published_at=func.now(), attempts=t.attempts + 1)
        )

    # -- the lease ---------------------------------------------------------------------------

    @property
    def holds_lease(self) -> bool:
        """Whether this relay holds its outbox's lease (as last checked)."""
        return self._lease is not None

    def try_lease(self) -> bool:
        """Take the lease if it is free, or check that this relay still holds it.

        The check of a held lease (a round trip on its connection) happens at
        most every ``lease_retry_s``; in between the lease is assumed held. A
        relay that lost it without noticing can only publish duplicates, which
        consumers absorb.
        """
        if self._lease is not None:
            if time.monotonic() - self._lease_checked_at < self.settings.lease_retry_s:
                return True
            try:
                self._lease.execute(text("SELECT 1"))
                self._lease.commit()
                self._lease_checked_at = time.monotonic()
                return True
            except SQLAlchemyError:
                log.warning("the relay's lease connection broke; the lease is lost")
                self._drop_lease()
                return False
        conn = self.engine.connect()
        try:
            self._set_timeout(conn)
            got = bool(
                conn.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": self._lease_key}
                ).scalar_one()
            )
            conn.commit()  # the session lock outlives the transaction
        except SQLAlchemyError:
            conn.invalidate()
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._lease = conn
        self._lease_checked_at = time.monotonic()
        log.info("relay for %s holds the lease", self.table.fullname)
        return True

    def release(self) -> None:
        """Give the lease back (another worker's relay can take over at once)."""
        if self._lease is None:
            return
        try:
            self._lease.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._lease_key})
            self._lease.commit()
            self._lease.close()
        except SQLAlchemyError:
            self._drop_lease()
        self._lease = None

    def _drop_lease(self) -> None:
        if self._lease is not None:
            # Discard the connection: closing the socket is what frees a session lock.
            self._lease.invalidate()
            self._lease.close()
        self._lease = None

    # -- publishing --------------------------------------------------------------------------

    def publish_once(self) -> int:
        """Publish one batch of unpublished rows; how many were published and marked.

        Raises ``redis.RedisError`` or ``SQLAlchemyError`` when the broker or the
        database fails (the rows stay unpublished; :meth:`run` backs off).
        """
        rows = self._unpublished()
        if not rows:
            return 0
        pipe = self.broker.pipeline(transaction=False)
        minid = self._minid()
        streams = []
        events = []
        for row in rows:
            stream = stream_for(row.aggregate)
            streams.append(stream)
            event = Event(
                id=str(row.event_id),
                source=self.source,
                type=row.type,
                subject=row.aggregate_id,
                time=row.created_at,
                data=row.payload,
                sequence=row.sequence,
                traceparent=row.traceparent,
            )
            events.append(event)
            pipe.xadd(stream, {FIELD: encode(event)}, minid=minid, approximate=True)
        with publish_span(events, streams):
            return self._send(pipe, rows, streams)

    def _send(self, pipe: Any, rows: list[Any], streams: list[str]) -> int:
        """Execute the ``XADD`` pipeline of ``rows``, mark those it published; how many."""
        try:
            faults.before_broker("publish", call_timeout_s(self.broker))
            results = pipe.execute(raise_on_error=False)
        except redis.RedisError as error:
            self._count_attempt([row.id for row in rows], error)
            raise
        published = 0
        for result in results:
            if isinstance(result, Exception):
                break
            published += 1
        if published:
            faults.crash_point("publish")  # in the stream, not yet marked: published again
        self._mark_published([row.id for row in rows[:published]])
        for stream in streams[:published]:
            EVENTS_PUBLISHED.labels(stream=stream).inc()
        if published < len(rows):
            failure: Exception = results[published]
            self._count_attempt([row.id for row in rows[published:]], failure)
            raise failure
        return published

    def _unpublished(self) -> list[Any]:
        with self.engine.begin() as conn:
            self._set_timeout(conn)
            limit = {"limit": self.settings.batch_size}
            return list(conn.execute(self._unpublished_query, limit).all())

    def _mark_published(self, ids: list[int]) -> None:
        if not ids:
            return
        with engine_for_current_span(self.engine).begin() as conn:
            self._set_timeout(conn)
            conn.execute(self._mark_query, {"ids": ids})

    def _count_attempt(self, ids: list[int], error: Exception) -> None:
        try:
            with engine_for_current_span(self.engine).begin() as conn:
                self._set_timeout(conn)
                conn.execute(
                    self.table.update()
                    .where(self.table.c.id.in_(ids))
                    .values(attempts=self.table.c.attempts + 1, last_error=str(error)[:1000])
                )
        except SQLAlchemyError:
            log.warning("could not record a failed publish attempt", exc_info=True)

    # -- pruning ----------------------------------------------------------------------------

    def prune_once(self) -> int:
        """Delete the rows published more than ``keep_published_s`` ago (each aggregate's newest
        stays), ``prune_batch`` per transaction until none is left; how many went.

        Raises ``SQLAlchemyError`` when the database fails (:meth:`run` tries again later).
        """
        settings = self.settings
        return pruning.in_chunks(
            lambda: Session(self.engine),
            lambda session: outbox.prune(
                session, self.table, settings.keep_published_s, limit=settings.prune_batch
            ),
            batch=settings.prune_batch,
            timeout_ms=settings.db_timeout_ms,
        )

    def _minid(self) -> str:
        oldest_ms = int((time.time() - self.settings.retention_s) * 1000)
        return str(max(oldest_ms, 0))

    def _set_timeout(self, conn: Connection) -> None:
        local_statement_timeout(conn, self.settings.db_timeout_ms)

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Publish until ``stop`` is set: lease, batches, back-off on failures."""
        backoff = self.settings.backoff_base_s
        last_event = time.monotonic()
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    if not self.try_lease():
                        stop.wait(self.settings.lease_retry_s)
                        continue
                    published = self.publish_once()
                except (redis.RedisError, SQLAlchemyError) as error:
                    log.warning("relay for %s: %s; retrying in %.1fs", self.service, error, backoff)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.settings.backoff_max_s)
                    continue
                except Exception:  # a bug must not silently end the thread that publishes
                    log.exception("relay for %s: unexpected error", self.service)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.settings.backoff_max_s)
                    continue
                backoff = self.settings.backoff_base_s
                if published:
                    last_event = time.monotonic()
                if published < self.settings.batch_size:  # nothing more to publish now
                    self._pruning.run_when_due(self.settings.prune_interval_s, self.prune_once)
                    # The pause runs from this poll's start: a round slowed by a busy machine
                    # does not also delay the next one.
                    pause = self.poll_pause_s(time.monotonic() - last_event)
                    stop.wait(max(0.0, pause - (time.monotonic() - started)))
        finally:
            self.release()

    def poll_pause_s(self, quiet_for_s: float) -> float:
        """The pause after a poll that found less than a batch, when the last event was
        published ``quiet_for_s`` ago: short while events flow, longer once the outbox is idle."""
        settings = self.settings
        if quiet_for_s < settings.idle_after_s:
            return settings.poll_interval_s
        return settings.idle_poll_interval_s

    def start_thread(self) -> tuple[threading.Thread, threading.Event]:
        """Run :meth:`run` in a daemon thread; set the returned event to stop it."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self.run, args=(stop,), name=f"outbox-relay-{self.service}", daemon=True
        )
        thread.start()
        return thread, stop
