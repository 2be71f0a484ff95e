"""The tables the event tests use, in a schema of their own (``events_test``).

``effects`` is what a test handler writes: one row per application of an
event, with no uniqueness, so an event applied twice shows up as two rows.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Identity, Integer, MetaData, String, Table
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Session

from shopkit.events.consumer import inbox_table
from shopkit.events.envelope import Event
from shopkit.events.outbox import outbox_table

SCHEMA = "events_test"
metadata = MetaData(schema=SCHEMA)
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
effects = Table(
    "effects",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("consumer_group", String(100), nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("aggregate_id", String(128), nullable=False),
    Column("sequence", Integer),
    Column("type", String(128), nullable=False),
)


def record_effect(group: str):  # type: ignore[no-untyped-def]
    """A handler that records each application of an event in ``effects``."""

    def handle(session: Session, event: Event) -> None:
        session.execute(
            effects.insert().values(
                consumer_group=group,
                event_id=event.id,
                aggregate_id=event.subject,
                sequence=event.sequence,
                type=event.type,
            )
        )

    return handle
