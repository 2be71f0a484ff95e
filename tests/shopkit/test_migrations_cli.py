"""``flask --app customers_service db upgrade`` on an empty database, then again as a no-op."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.support.database import scratch_database


def test_db_upgrade_cli_creates_schema_and_is_idempotent(database_url: str) -> None:
    flask = str(Path(sys.executable).parent / "flask")
    with scratch_database(database_url, "shop_cli") as url:
        env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
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
    assert version == "0004"  # the head: 0004_customer_events
    assert admins == 1  # bootstrap admin created once
    assert keys == 1
