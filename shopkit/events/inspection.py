"""What an operator or the audit reads about one service's events: its outbox and its inbox.

Plain functions over a session (the admin routes, :mod:`shopkit.events.admin_routes`,
are thin wrappers): the outbox's backlog, a page of its rows (which events were
published and when), a group's inbox size and a page of the event ids it applied.
Pages are keyset pages (``after`` the last id seen), so reading a large outbox or
inbox page by page costs the same for every page and never skips or repeats a row
while new rows arrive.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

#: Counts of a consuming service's own effects per event id (``{"notifications": 1}``), for
#: the audit's "no effect twice" check; a service passes one to the admin routes.
EffectCounter = Callable[[Session, Sequence[uuid.UUID]], dict[uuid.UUID, dict[str, int]]]


@dataclass(frozen=True)
class OutboxSummary:
    """One outbox right now: its rows, the unpublished ones and how old the oldest is."""

    total: int
    unpublished: int
    #: Unpublished rows the relay already failed to publish at least once.
    failing: int
    oldest_unpublished_age_s: float | None


def outbox_summary(session: Session, table: Table) -> OutboxSummary:
    """Counts of ``table``'s rows, published or not, and the age of the oldest unpublished."""
    unpublished = table.c.published_at.is_(None)
    row = session.execute(
        select(
            func.count(),
            func.count().filter(unpublished),
            func.count().filter(unpublished & (table.c.attempts > 0)),
            func.extract("epoch", func.now() - func.min(table.c.created_at).filter(unpublished)),
        ).select_from(table)
    ).one()
    age = None if row[3] is None else max(0.0, float(row[3]))
    return OutboxSummary(int(row[0]), int(row[1]), int(row[2]), age)


def outbox_rows(session: Session, table: Table, *, after: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` rows of ``table`` with an id above ``after``, in id order."""
    rows = session.execute(
        select(
            table.c.id,
            table.c.event_id,
            table.c.type,
            table.c.aggregate,
            table.c.aggregate_id,
            table.c.sequence,
            table.c.created_at,
            table.c.published_at,
            table.c.attempts,
            table.c.last_error,
        )
        .where(table.c.id > after)
        .order_by(table.c.id)
        .limit(limit)
    ).mappings()
    return [dict(row) for row in rows]


def inbox_size(session: Session, inbox: Table, group: str) -> int:
    """How many events ``group`` applied (its inbox rows)."""
    count = session.execute(
        select(func.count()).select_from(inbox).where(inbox.c.consumer_group == group)
    )
    return int(count.scalar_one())


def inbox_rows(
    session: Session,
    inbox: Table,
    group: str,
    *,
    after: uuid.UUID | None,
    limit: int,
    effects: EffectCounter | None = None,
) -> list[dict[str, Any]]:
    """Up to ``limit`` events ``group`` applied, by event id above ``after``.

    Each is ``{event_id, type, stream, applied_at}``, plus ``effects`` when the
    service counts its own effects per event.
    """
    query = select(inbox.c.event_id, inbox.c.type, inbox.c.stream, inbox.c.applied_at).where(
        inbox.c.consumer_group == group
    )
    if after is not None:
        query = query.where(inbox.c.event_id > after)
    rows = [dict(row) for row in session.execute(query.order_by(inbox.c.event_id).limit(limit))
            .mappings()]  # fmt: skip
    if effects is not None and rows:
        counted = effects(session, [row["event_id"] for row in rows])
        for row in rows:
            row["effects"] = counted.get(row["event_id"], {})
    return rows
