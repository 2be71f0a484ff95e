"""The transactional outbox: an event is a row written in the same transaction as the change.

A service adds the table to its own schema with :func:`outbox_table` and
calls :func:`emit` (or :func:`emit_many` on a batched path) inside the
transaction that changes state. Neither commits: if the transaction rolls
back, the event never existed; if it commits, the relay
(:mod:`shopkit.events.relay`) will publish it, however long the broker is
away. The request never waits for the broker.

Order. Each row gets ``sequence``, its position among its aggregate's events.
``emit`` first takes a transaction-scoped advisory lock on the aggregate, so
two transactions emitting for the same aggregate are serialized: the second
one inserts only after the first committed (or rolled back) and sees its row.
That makes ``sequence`` and ``id`` follow commit order per aggregate, which is
what lets the relay publish in ``id`` order without ever publishing an
aggregate's later event before an earlier one that was still uncommitted
(``id`` alone would not do: ids are drawn at insert time, and two concurrent
transactions can commit in the opposite order). The lock costs one round trip
and is held only until the caller commits. It needs the default READ COMMITTED
isolation: each statement must see the rows committed before the lock was granted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Session

from shopkit.db import advisory_key
from shopkit.events.catalog import event_type
from shopkit.events.envelope import current_traceparent, new_event_id

DEFAULT_NAME = "outbox"


def outbox_table(metadata: MetaData, name: str = DEFAULT_NAME) -> Table:
    """Add the outbox table to ``metadata`` (a service's ``MetaData(schema=...)``) and return it."""
    return Table(
        name,
        metadata,
        # Insert order; per aggregate also commit order (see the module docstring).
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        Column("aggregate", String(64), nullable=False),
        Column("aggregate_id", String(128), nullable=False),
        Column("sequence", BigInteger, nullable=False),
        Column("type", String(128), nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("traceparent", String(64)),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text),
        UniqueConstraint("aggregate", "aggregate_id", "sequence"),
        # The relay's scan: only the rows still to publish, in id order.
        Index(f"ix_{name}_unpublished", "id", postgresql_where=text("published_at IS NULL")),
    )


@dataclass(frozen=True)
class NewEvent:
    """An event to emit: its catalogued type, the aggregate's id and the ``data``."""

    type: str
    aggregate_id: str | int | uuid.UUID
    data: Mapping[str, Any]


def lock_key(table: Table, aggregate: str, aggregate_id: str) -> int:
    """The advisory-lock key of one aggregate in one outbox."""
    return advisory_key("outbox", table.fullname, aggregate, str(aggregate_id))


def emit(
    session: Session,
    table: Table,
    type_name: str,
    aggregate_id: str | int | uuid.UUID,
    data: Mapping[str, Any],
) -> uuid.UUID:
    """Write one event of ``type_name`` into ``table`` in the session's transaction; its id.

    Does not commit: the caller's commit publishes the event, its rollback erases it.
    """
    return emit_many(session, table, [NewEvent(type_name, aggregate_id, data)])[0]


def emit_many(
    session: Session, table: Table, events: Sequence[NewEvent], *, serialized: bool = False
) -> list[uuid.UUID]:
    """Write several events in two statements (the batched purchase path); their ids, in order.

    The aggregates are locked in one fixed order (by key) so two batches
    touching the same aggregates cannot deadlock; events of one aggregate
    get consecutive sequences in the order given.

    ``serialized=True`` skips the advisory locks (one statement instead of
    two): the caller promises that its transaction already holds, for each
    aggregate, a row lock that every transaction emitting for that aggregate
    takes before emitting (inventory's product rows, locked by the very
    ``UPDATE`` that changes the stock). That lock serializes the emitters just
    as the advisory lock would, and the ``INSERT``, a later statement, sees
    the rows of whoever held it before.
    """
    if not events:
        return []
    traceparent = current_traceparent()
    rows = []
    keys = set()
    for position, new in enumerate(events):
        catalogued = event_type(new.type)  # an unknown type fails here, before anything is written
        aggregate_id = str(new.aggregate_id)
        keys.add(lock_key(table, catalogued.aggregate, aggregate_id))
        event_id = new_event_id()
        rows.append(
            {
                "position": position,
                "event_id": str(event_id),
                "aggregate": catalogued.aggregate,
                "aggregate_id": aggregate_id,
                "type": catalogued.name,
                "payload": dict(new.data),
                "traceparent": traceparent,
            }
        )
    if not serialized:
        session.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) AS k"
            ),
            {"keys": sorted(keys)},
        )
    name = qualified(session, table)
    # The subquery sees every row committed before the locks were granted (READ COMMITTED).
    inserted = session.execute(
        text(
            f"""
            INSERT INTO {name} (event_id, aggregate, aggregate_id, sequence, type, payload,
                                traceparent)
            SELECT r.event_id, r.aggregate, r.aggregate_id,
                   coalesce((SELECT max(o.sequence) FROM {name} o
                             WHERE o.aggregate = r.aggregate
                               AND o.aggregate_id = r.aggregate_id), 0)
                   + row_number() OVER (PARTITION BY r.aggregate, r.aggregate_id
                                        ORDER BY r.position),
                   r.type, r.payload, r.traceparent
            FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
                position int, event_id uuid, aggregate text, aggregate_id text, type text,
                payload jsonb, traceparent text)
            ORDER BY r.position
            RETURNING event_id
            """  # noqa: S608 (the table name is ours, quoted)
        ),
        {"rows": json.dumps(rows, default=str)},
    )
    if len(inserted.all()) != len(rows):  # pragma: no cover (the INSERT writes every row or fails)
        raise RuntimeError("the outbox insert wrote fewer rows than it was given")
    return [uuid.UUID(str(row["event_id"])) for row in rows]


def backlog(session: Session, table: Table) -> int:
    """How many committed rows of ``table`` are not published yet."""
    name = qualified(session, table)
    count = session.execute(text(f"SELECT count(*) FROM {name} WHERE published_at IS NULL"))  # noqa: S608
    return int(count.scalar_one())


def prune(session: Session, table: Table, older_than_s: float, *, limit: int | None = None) -> int:
    """Delete rows published more than ``older_than_s`` seconds ago, at most ``limit`` of them
    (``None``: all); how many went.

    Published rows are kept for a while so that the audit can compare the
    outbox with what consumers applied; after that they are only history. The
    relay prunes its outbox on a schedule (:class:`shopkit.events.relay.RelaySettings`),
    a chunk of ``limit`` rows per transaction.
    Each aggregate's newest row stays whatever its age: the next event's
    ``sequence`` is counted on from it, and an aggregate whose rows were all
    gone would start again at 1, below what consumers already applied, which
    they would then ignore as old.
    """
    name = qualified(session, table)
    deleted = session.execute(
        text(
            f"DELETE FROM {name} WHERE id IN ("  # noqa: S608
            f"SELECT old.id FROM {name} AS old WHERE old.published_at IS NOT NULL "
            "AND old.published_at < now() - make_interval(secs => :age) "
            f"AND EXISTS (SELECT 1 FROM {name} AS newer "
            "WHERE newer.aggregate = old.aggregate AND newer.aggregate_id = old.aggregate_id "
            "AND newer.sequence > old.sequence) "
            "LIMIT :limit)"  # NULL: no limit
        ),
        {"age": older_than_s, "limit": limit},
    )
    return int(deleted.rowcount or 0)  # type: ignore[attr-defined]


def qualified(session: Session, table: Table) -> str:
    """``table``'s schema-qualified, quoted name for hand-written SQL."""
    preparer = session.get_bind().dialect.identifier_preparer
    return preparer.format_table(table)
