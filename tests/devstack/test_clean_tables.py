"""Each test starts from empty tables: what ``truncate_all`` empties, restarts and keeps."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, text

from tests.support.database import SCHEMAS, truncate_all


def test_touched_tables_are_emptied_and_used_identities_restarted(
    database_url: str, db_engine: Engine
) -> None:
    with db_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO customers.outbox (event_id, aggregate, aggregate_id, sequence, type, "
                "payload) VALUES (:id, 'wallet', '1', 1, 'shop.wallet.credited.v1', '{}')"
            ),
            {"id": uuid.uuid4()},
        )
        # A sequence used by an insert that rolled back: the table is empty, its identity moved.
        conn.execute(text("SELECT nextval('inventory.products_id_seq')"))
        kept = conn.execute(text("SELECT count(*) FROM customers.signing_keys")).scalar_one()
        assert kept > 0
        assert conn.execute(text("SELECT count(*) FROM customers.outbox")).scalar_one() == 1

    truncate_all(database_url, SCHEMAS)

    with db_engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM customers.outbox")).scalar_one() == 0
        for sequence in ("customers.outbox_id_seq", "inventory.products_id_seq"):
            assert conn.execute(text(f"SELECT nextval('{sequence}')")).scalar_one() == 1
        assert (
            conn.execute(text("SELECT count(*) FROM customers.signing_keys")).scalar_one() == kept
        )
        assert conn.execute(text("SELECT version_num FROM sales.alembic_version")).scalar_one()
