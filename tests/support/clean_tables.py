"""Empty the service tables between tests, cheaply: only what a test touched, by ``DELETE``.

Truncating all 36 tables took about 90 ms of CPU per test. ``TRUNCATE`` gives
each table new files and makes every connection of the live services reload
its cache of the table; a test leaves a few rows in a few tables. So, in one
transaction:

1. every service table but :data:`KEEP_TABLES` is locked, as ``TRUNCATE``
   locked them, so that no live service (a relay, a consumer) writes meanwhile;
2. the touched tables are found: those with rows, or whose identity sequence was
   used (an insert that rolled back uses it too);
3. their rows are deleted, the tables that reference another first, and their
   identities restarted (but :data:`CONTINUED_IDENTITIES`). A table with many rows
   (a load test's) is truncated instead, with the others, as before.
"""

from __future__ import annotations

import time
from graphlib import TopologicalSorter

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import OperationalError

#: Tables kept between tests (migration state and the token signing keys).
KEEP_TABLES = {"alembic_version", "signing_keys"}
#: Tables whose identity goes on between tests: a customer id is never handed out twice in
#: a session. The live services remember which ids are deactivated
#: (:class:`shopkit.auth.DeactivatedAccounts`, re-read every ``DEACTIVATION_REFRESH``
#: seconds), and a new customer given a deactivated one's id was refused until then.
CONTINUED_IDENTITIES = {("customers", "customers")}
#: Above this many rows in a table, truncating is cheaper than deleting.
DELETE_AT_MOST = 1000
ATTEMPTS = 5
DEADLOCK_DETECTED = "40P01"

Table = tuple[str, str]


def empty_service_tables(url: str, schemas: list[str]) -> None:
    """Empty every service table in ``schemas`` (but :data:`KEEP_TABLES`) and restart the
    identities the tests used (but :data:`CONTINUED_IDENTITIES`)."""
    engine = create_engine(url)
    try:
        for attempt in range(ATTEMPTS):
            try:
                with engine.begin() as conn:
                    _empty(conn, schemas)
                return
            except OperationalError as error:
                # A live service's relay or consumer may lock two of these tables in the
                # other order meanwhile: PostgreSQL picks one of the two to fail.
                deadlock = getattr(error.orig, "pgcode", None) == DEADLOCK_DETECTED
                if not deadlock or attempt == ATTEMPTS - 1:
                    raise
                time.sleep(0.1)
    finally:
        engine.dispose()


def _quoted(table: Table) -> str:
    return f'"{table[0]}"."{table[1]}"'


def _empty(conn: Connection, schemas: list[str]) -> None:
    tables = [
        (schema, name)
        for schema, name in conn.execute(
            text(
                "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(:schemas) "
                "ORDER BY schemaname, tablename"
            ),
            {"schemas": schemas},
        ).all()
        if name not in KEEP_TABLES
    ]
    if not tables:
        return
    conn.execute(text(f"LOCK TABLE {', '.join(map(_quoted, tables))} IN ACCESS EXCLUSIVE MODE"))
    rows = _row_counts(conn, tables)
    sequences = _used_sequences(conn, schemas)
    touched = {table for table, count in rows.items() if count} | set(sequences.values())
    touched &= set(tables)
    if not touched:
        return
    if any(count > DELETE_AT_MOST for count in rows.values()):
        names = ", ".join(map(_quoted, sorted(touched)))
        conn.execute(text(f"TRUNCATE {names} CASCADE"))
    else:
        for table in _referencing_first(conn, schemas, touched):
            if rows[table]:
                conn.execute(text(f"DELETE FROM {_quoted(table)}"))
    for (sequence, start), table in sequences.items():
        if table in touched and table not in CONTINUED_IDENTITIES:
            restart = "SELECT setval(CAST(:sequence AS regclass), :start, false)"
            conn.execute(text(restart), {"sequence": sequence, "start": start})


def _row_counts(conn: Connection, tables: list[Table]) -> dict[Table, int]:
    """Each table's rows, counted up to one past :data:`DELETE_AT_MOST`."""
    counts = " UNION ALL ".join(
        f"SELECT {index}, (SELECT count(*) FROM (SELECT 1 FROM {_quoted(table)} "
        f"LIMIT {DELETE_AT_MOST + 1}) AS first_rows)"
        for index, table in enumerate(tables)
    )
    return {tables[index]: count for index, count in conn.execute(text(counts)).all()}


def _used_sequences(conn: Connection, schemas: list[str]) -> dict[tuple[str, int], Table]:
    """(quoted name, start) of each identity or serial sequence used since its restart -> the
    table that owns it.

    ``pg_sequences.last_value`` is NULL until a sequence is used, and again once restarted.
    """
    found = conn.execute(
        text(
            "SELECT format('%I.%I', seq_ns.nspname, seq.relname), s.start_value, "
            "owner_ns.nspname, owner.relname "
            "FROM pg_depend d "
            "JOIN pg_class seq ON seq.oid = d.objid AND seq.relkind = 'S' "
            "JOIN pg_namespace seq_ns ON seq_ns.oid = seq.relnamespace "
            "JOIN pg_sequences s ON s.schemaname = seq_ns.nspname AND s.sequencename = seq.relname "
            "JOIN pg_class owner ON owner.oid = d.refobjid "
            "JOIN pg_namespace owner_ns ON owner_ns.oid = owner.relnamespace "
            "WHERE d.deptype IN ('a', 'i') AND s.last_value IS NOT NULL "
            "AND owner_ns.nspname = ANY(:schemas)"
        ),
        {"schemas": schemas},
    ).all()
    return {(sequence, start): (schema, table) for sequence, start, schema, table in found}


def _referencing_first(conn: Connection, schemas: list[str], tables: set[Table]) -> list[Table]:
    """``tables`` ordered so that a table comes before every table it references."""
    edges = conn.execute(
        text(
            "SELECT child_ns.nspname, child.relname, parent_ns.nspname, parent.relname "
            "FROM pg_constraint k "
            "JOIN pg_class child ON child.oid = k.conrelid "
            "JOIN pg_namespace child_ns ON child_ns.oid = child.relnamespace "
            "JOIN pg_class parent ON parent.oid = k.confrelid "
            "JOIN pg_namespace parent_ns ON parent_ns.oid = parent.relnamespace "
            "WHERE k.contype = 'f' AND child_ns.nspname = ANY(:schemas)"
        ),
        {"schemas": schemas},
    ).all()
    order: TopologicalSorter[Table] = TopologicalSorter({table: () for table in tables})
    for child_schema, child, parent_schema, parent in edges:
        referencing, referenced = (child_schema, child), (parent_schema, parent)
        if referencing != referenced and {referencing, referenced} <= tables:
            order.add(referenced, referencing)  # the referenced table after the one referencing it
    return list(order.static_order())
