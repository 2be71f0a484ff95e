"""Each test starts from empty tables: what ``empty_service_tables`` empties, restarts and keeps."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

from tests.support.clean_tables import DELETE_AT_MOST
from tests.support.database import SCHEMAS, empty_service_tables

OUTBOX_ROW = (
    "INSERT INTO customers.outbox (event_id, aggregate, aggregate_id, sequence, type, payload) "
    "SELECT gen_random_uuid(), 'wallet', '1', n, 'shop.wallet.credited.v1', '{}' "
    "FROM generate_series(1, :rows) AS n"
)


def _count(conn: Connection, table: str) -> int:
    return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def _next_id(conn: Connection, sequence: str) -> int:
    return int(conn.execute(text(f"SELECT nextval('{sequence}')")).scalar_one())


def test_touched_tables_are_emptied_referencing_first_and_used_identities_restarted(
    database_url: str, db_engine: Engine
) -> None:
    with db_engine.begin() as conn:
        conn.execute(text(OUTBOX_ROW), {"rows": 1})
        # The bootstrap admin's ledger entry: deleting the customers first would break its key.
        admin = conn.execute(text("SELECT min(id) FROM customers.customers")).scalar_one()
        conn.execute(
            text(
                "INSERT INTO customers.ledger_entries "
                "(customer_id, kind, amount, balance_after, actor) "
                "VALUES (:id, 'charge', 5, 5, 'test')"
            ),
            {"id": admin},
        )
        # A sequence used by an insert that rolled back: the table is empty, its identity moved.
        _next_id(conn, "inventory.products_id_seq")
        kept = _count(conn, "customers.signing_keys")
        assert kept > 0

    empty_service_tables(database_url, SCHEMAS)

    with db_engine.begin() as conn:
        for table in ("customers.outbox", "customers.ledger_entries", "customers.customers"):
            assert _count(conn, table) == 0, table
        for sequence in ("customers.outbox_id_seq", "inventory.products_id_seq"):
            assert _next_id(conn, sequence) == 1, sequence
        # Customer ids go on: no new customer gets an id a live service knows as deactivated.
        assert _next_id(conn, "customers.customers_id_seq") > admin
        assert _count(conn, "customers.signing_keys") == kept
        assert conn.execute(text("SELECT version_num FROM sales.alembic_version")).scalar_one()


def test_a_table_with_many_rows_is_emptied_too(database_url: str, db_engine: Engine) -> None:
    with db_engine.begin() as conn:
        conn.execute(text(OUTBOX_ROW), {"rows": DELETE_AT_MOST + 5})
        admin = conn.execute(text("SELECT min(id) FROM customers.customers")).scalar_one()

    empty_service_tables(database_url, SCHEMAS)

    with db_engine.begin() as conn:
        assert _count(conn, "customers.outbox") == 0
        assert _count(conn, "customers.customers") == 0
        assert _next_id(conn, "customers.outbox_id_seq") == 1
        assert _next_id(conn, "customers.customers_id_seq") > admin
