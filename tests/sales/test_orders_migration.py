"""Migration 0003 turns every existing sale into a one-line order, and refuses to undo orders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from shopkit.migrations import head_revision
from tests.support.database import scratch_database


def _db(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    flask = str(Path(sys.executable).parent / "flask")
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [flask, "--app", "sales_service", "db", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_old_sales_become_one_line_orders_with_a_history(database_url: str) -> None:
    with scratch_database(database_url, "shop_orders_migration") as url:
        assert _db(url, "upgrade", "0002").returncode == 0
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO sales.sales (id, customer_id, username, product_id, product_name,"
                    " quantity, unit_price, total, status, completed_at) VALUES"
                    " ('00000000-0000-0000-0000-000000000001', 7, 'ada', 42, 'Lamp', 3, 2.50,"
                    "  7.50, 'completed', now()),"
                    " ('00000000-0000-0000-0000-000000000002', 7, 'ada', 43, NULL, 1, NULL,"
                    "  NULL, 'pending', NULL)"
                )
            )
        upgraded = _db(url, "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        with engine.connect() as conn:
            lines = conn.execute(
                text(
                    "SELECT sale_id::text, product_id, quantity, product_name, unit_price, position"
                    " FROM sales.sale_lines ORDER BY sale_id"
                )
            ).all()
            histories = dict(
                conn.execute(
                    text(
                        "SELECT id::text, jsonb_path_query_array(history, '$[*].status')"
                        " FROM sales.sales"
                    )
                ).all()
            )
        assert [tuple(row) for row in lines] == [
            ("00000000-0000-0000-0000-000000000001", 42, 3, "Lamp", 2.50, 0),
            ("00000000-0000-0000-0000-000000000002", 43, 1, None, None, 0),
        ]
        assert histories == {
            "00000000-0000-0000-0000-000000000001": ["pending", "completed"],
            "00000000-0000-0000-0000-000000000002": ["pending"],
        }
        # An order of several lines cannot go back to the one-line schema: refused, kept.
        with engine.begin() as conn:
            conn.execute(text("UPDATE sales.sales SET line_count = 2 WHERE product_id = 43"))
        refused = _db(url, "downgrade", "0002")
        assert refused.returncode != 0
        assert "cannot hold them" in refused.stderr + refused.stdout
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM sales.alembic_version")).scalar()
        assert version == head_revision("sales_service")  # refused: nothing undone
        engine.dispose()
