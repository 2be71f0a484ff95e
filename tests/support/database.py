"""The test database: a real PostgreSQL, one fresh database per test session.

It also hands the tests the dev stack's pieces (launcher, embedded PostgreSQL, gateway).
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, text
from sqlalchemy.exc import OperationalError

# The dev stack's pieces the tests use are imported here and only here: tests import them
# from this module, so moving the dev stack is a change of these lines alone.
from devstack import broker, mailsink, postgres, roles
from devstack.gateway import (
    CLOSED_ADDRESS,
    GATEWAY_DIR,
    SHARED_FILES,
    STOREFRONT_PATH,
    Gateway,
    nginx_binary,
    site_config,
    upstream_names,
)
from devstack.postgres import psql_command, scratch_database, throwaway_server
from devstack.processes import ServiceProcess, WorkerProcess
from devstack.roles import create_service_roles, service_role_url
from shopkit.migrations import upgrade
from shopkit.registry import APPS, FRONTENDS, SERVICE_NAMES, SERVICES, app, packages
from tests.support.ports import free_port

#: Service name -> package, of every service in the registry.
PACKAGES = packages()
#: The storefront's port.
STOREFRONT_PORT = app("storefront").port

__all__ = [
    "APPS",
    "CLOSED_ADDRESS",
    "FRONTENDS",
    "GATEWAY_DIR",
    "KEEP_TABLES",
    "PACKAGES",
    "SCHEMAS",
    "SERVICES",
    "SERVICE_NAMES",
    "SHARED_FILES",
    "STOREFRONT_PATH",
    "STOREFRONT_PORT",
    "Gateway",
    "ServiceProcess",
    "WorkerProcess",
    "app",
    "broker",
    "free_port",
    "fresh_database",
    "mailsink",
    "migrate_as_service_roles",
    "nginx_binary",
    "packages",
    "postgres",
    "present_packages",
    "psql_command",
    "roles",
    "scratch_database",
    "server_url",
    "service_role_url",
    "site_config",
    "throwaway_server",
    "truncate_all",
    "upstream_names",
]

#: Tables kept between tests (migration state and the token signing keys).
KEEP_TABLES = {"alembic_version", "signing_keys"}


def present_packages() -> dict[str, str]:
    """Service name → package, for the services that exist in this checkout.

    ``SHOP_TEST_SERVICES=customers,sales`` limits it (e.g. while a service is half-built).
    """
    found = {}
    only = {s for s in os.environ.get("SHOP_TEST_SERVICES", "").split(",") if s}
    for service in SERVICES:
        name, package = service.name, service.package
        if only and name not in only:
            continue
        spec = importlib.util.find_spec(package)
        # A regular package (not a half-written namespace dir) with its migrations.
        if spec is not None and spec.origin and (Path(spec.origin).parent / "migrations").is_dir():
            found[name] = package
    return found


@contextmanager
def server_url(env_url: str | None) -> Iterator[str]:
    """An admin URL of a PostgreSQL server: ``TEST_DATABASE_URL`` or an embedded one."""
    with throwaway_server("shop-test-pg-", database_url=env_url, durable=False) as (_, url):
        yield url


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """Create a uniquely named database on the server, migrate every service, drop it after.

    As in Compose and ``make run``, each service's schema belongs to its own role, and
    each service is migrated (and, in the tests, connects) as that role.
    """
    with scratch_database(admin_url, "shop_test") as url:
        migrate_as_service_roles(url)
        yield url


def migrate_as_service_roles(url: str) -> None:
    """Create the service roles in ``url``'s database and migrate each service as its role."""
    create_service_roles(url)
    for service, package in present_packages().items():
        upgrade(package, service_role_url(url, service))


#: Every service's schema (each is named after its service).
SCHEMAS = list(present_packages())


def truncate_all(url: str, schemas: list[str]) -> None:
    """Empty every service table (but :data:`KEEP_TABLES`) so each test starts clean.

    Only the tables a test touched are truncated, with their identities restarted:
    those with rows, or whose identity sequence was used (a rolled-back insert uses
    one too). Truncating all 36 tables took about 90 ms of CPU; a test touches a few.
    """
    engine = create_engine(url)
    try:
        for attempt in range(TRUNCATE_ATTEMPTS):
            try:
                with engine.begin() as conn:
                    tables = [
                        f'"{schema}"."{table}"'
                        for schema, table in sorted(_touched_tables(conn, schemas))
                        if table not in KEEP_TABLES
                    ]
                    if tables:
                        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
                return
            except OperationalError as error:
                # A live service's relay or consumer may write two of these tables in the
                # other order meanwhile: PostgreSQL picks one of the two to fail.
                deadlock = getattr(error.orig, "pgcode", None) == DEADLOCK_DETECTED
                if not deadlock or attempt == TRUNCATE_ATTEMPTS - 1:
                    raise
                time.sleep(0.1)
    finally:
        engine.dispose()


def _touched_tables(conn: Any, schemas: list[str]) -> set[tuple[str, str]]:
    """(schema, table) of each table in ``schemas`` that has rows or a used identity."""
    listed = conn.execute(
        text("SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(:schemas)"),
        {"schemas": schemas},
    ).all()
    if not listed:
        return set()
    with_rows = " UNION ALL ".join(
        f'SELECT {index} WHERE EXISTS (SELECT 1 FROM "{schema}"."{table}")'
        for index, (schema, table) in enumerate(listed)
    )
    touched = {tuple(listed[index]) for index in conn.execute(text(with_rows)).scalars()}
    # pg_sequences.last_value is NULL until a sequence is used, and again once restarted.
    used_identity = conn.execute(
        text(
            "SELECT owner_ns.nspname, owner.relname FROM pg_depend d "
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
    return touched | {tuple(row) for row in used_identity}


TRUNCATE_ATTEMPTS = 5
DEADLOCK_DETECTED = "40P01"


def schema_drift(engine: Engine, schema: str, metadata: MetaData) -> list[Any]:
    """What Alembic's autogenerate finds between ``schema`` as migrated and the models'
    ``metadata`` (empty when the migrations match the models)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_schemas": True,
                "include_name": lambda name, type_, _p: type_ != "schema" or name == schema,
                "compare_type": True,
                "version_table_schema": schema,
            },
        )
        return list(compare_metadata(context, metadata))
