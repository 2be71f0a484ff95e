"""Read a service's outbox in tests: its rows, and the checks every event row must pass."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, text

from shopkit.events.catalog import validate_data


def outbox_rows(
    db: Engine | str,
    service: str,
    *,
    aggregate: str | None = None,
    aggregate_id: object = None,
) -> list[Any]:
    """``service``'s outbox rows (of one kind of aggregate, of one aggregate), in id order.

    ``db`` is an engine, or a database URL (an engine is made for the read and disposed of).
    Each row has the outbox's columns the tests look at (the relay's ``attempts`` and
    ``last_error`` among them), and ``xmin`` (as text): the transaction that wrote it.
    """
    engine = create_engine(db) if isinstance(db, str) else db
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT id, aggregate, aggregate_id, sequence, type, payload, "
                        "published_at, attempts, last_error, xmin::text AS xmin "
                        f"FROM {service}.outbox "
                        "WHERE (CAST(:aggregate AS text) IS NULL OR aggregate = :aggregate) "
                        "AND (CAST(:id AS text) IS NULL OR aggregate_id = :id) ORDER BY id"
                    ),
                    {
                        "aggregate": aggregate,
                        "id": None if aggregate_id is None else str(aggregate_id),
                    },
                )
            )
    finally:
        if isinstance(db, str):
            engine.dispose()


def checked(
    rows: list[Any], aggregate: str, *, id_field: str | None = None, gapless: bool = False
) -> list[Any]:
    """``rows``, each asserted to be about an ``aggregate`` with data valid against the
    catalogue's schema; with ``id_field``, the aggregate's id is that field of the data;
    with ``gapless``, each aggregate's sequences run 1, 2, 3... in row order."""
    sequences: dict[str, list[int]] = {}
    for row in rows:
        assert row.aggregate == aggregate
        validate_data(row.type, row.payload)
        if id_field is not None:
            assert row.aggregate_id == str(row.payload[id_field])
        sequences.setdefault(row.aggregate_id, []).append(row.sequence)
    if gapless:
        for found in sequences.values():
            assert found == list(range(1, len(found) + 1))
    return rows
