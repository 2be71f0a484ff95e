"""Read the customers outbox in tests: one aggregate kind's rows, each checked against its schema."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from shopkit.events.catalog import validate_data


def outbox_rows(db_engine: Engine, aggregate: str, customer_id: int | None = None) -> list[Any]:
    """The customers outbox's ``aggregate`` events (of one customer), oldest first."""
    with db_engine.connect() as conn:
        rows = list(
            conn.execute(
                text(
                    "SELECT aggregate, aggregate_id, sequence, type, payload, published_at "
                    "FROM customers.outbox WHERE aggregate = :aggregate AND "
                    "(CAST(:customer AS text) IS NULL OR aggregate_id = :customer) ORDER BY id"
                ),
                {"aggregate": aggregate,
                 "customer": None if customer_id is None else str(customer_id)},
            )
        )  # fmt: skip
    for row in rows:
        validate_data(row.type, row.payload)
        assert row.aggregate_id == str(row.payload["customer_id"])
    return rows
