"""``flask --app customers_service db upgrade`` on an empty database, then again as a no-op."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def test_db_upgrade_cli_creates_schema_and_is_idempotent(database_url: str) -> None:
    name = f"shop_cli_{uuid.uuid4().hex[:8]}"
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    flask = str(Path(sys.executable).parent / "flask")
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    try:
        for _ in range(2):
            done = subprocess.run(
                [flask, "--app", "customers_service", "db", "upgrade"],
                env=env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert "customers_service: database at head" in done.stdout
        engine = create_engine(url)
        with engine.connect() as conn:
            version = conn.execute(
                text("SELECT version_num FROM customers.alembic_version")
            ).scalar_one()
            admins = conn.execute(
                text("SELECT count(*) FROM customers.customers WHERE role = 'admin'")
            ).scalar_one()
            keys = conn.execute(text("SELECT count(*) FROM customers.signing_keys")).scalar_one()
        engine.dispose()
        assert version == "0001"
        assert admins == 1  # bootstrap admin created once
        assert keys == 1
    finally:
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
