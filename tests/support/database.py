"""The test database: a real PostgreSQL, one fresh database per test session."""

from __future__ import annotations

import importlib.util
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shopkit import embedded_pg
from shopkit.db import normalise_url
from shopkit.migrations import upgrade
from shopkit.stack import PACKAGES

#: Tables kept between tests (migration state and the token signing keys).
KEEP_TABLES = {"alembic_version", "signing_keys"}


def present_packages() -> dict[str, str]:
    """Service name → package, for the services that exist in this checkout.

    ``SHOP_TEST_SERVICES=customers,sales`` limits it (e.g. while a service is half-built).
    """
    found = {}
    only = {s for s in os.environ.get("SHOP_TEST_SERVICES", "").split(",") if s}
    for name, package in PACKAGES.items():
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
    if env_url:
        yield normalise_url(env_url)
        return
    with tempfile.TemporaryDirectory(prefix="shop-test-pg-") as tmp:
        server, url = embedded_pg.start(Path(tmp) / "pg", cleanup_mode="stop", durable=False)
        try:
            yield url
        finally:
            server.cleanup()  # type: ignore[attr-defined]


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """Create a uniquely named database on the server, migrate every service, drop it after."""
    name = f"shop_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        for package in present_packages().values():
            upgrade(package, url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def truncate_all(url: str, schemas: list[str]) -> None:
    """Empty every service table (but :data:`KEEP_TABLES`) so each test starts clean."""
    engine = create_engine(url)
    with engine.begin() as conn:
        rows = conn.execute(
            text("SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(:schemas)"),
            {"schemas": schemas},
        ).all()
        tables = [f'"{s}"."{t}"' for s, t in rows if t not in KEEP_TABLES]
        if tables:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()
