"""Migration 0002 moves every one-line reservation into a header and its line, data kept."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text

from shopkit.migrations import upgrade
from tests.support.database import scratch_database


def test_0002_moves_reservations_into_lines_and_back(database_url: str) -> None:
    from alembic import command

    from shopkit.migrations import alembic_config

    reserved, released = uuid.uuid4(), uuid.uuid4()
    with scratch_database(database_url, "shop_inventory_0002") as url:
        upgrade("inventory_service", url, "0001")
        engine = create_engine(url)
        with engine.begin() as conn:
            product = conn.execute(
                text(
                    "INSERT INTO inventory.products (name, category, price, stock) "
                    "VALUES ('Beans', 'food', 12.50, 7) RETURNING id"
                )
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO inventory.reservations (sale_id, product_id, quantity, "
                    "unit_price, name, status, reserved_by, released_at) VALUES "
                    "(:a, :p, 2, 12.50, 'Beans', 'reserved', 'sales', NULL), "
                    "(:b, :p, 1, 11.00, 'Old beans', 'released', 'sales', now())"
                ),
                {"a": reserved, "b": released, "p": product},
            )
        upgrade("inventory_service", url)
        with engine.connect() as conn:
            headers = conn.execute(
                text(
                    "SELECT sale_id, status, reserved_by, released_at IS NOT NULL, returned_at "
                    "FROM inventory.reservations ORDER BY status"
                )
            ).all()
            lines = conn.execute(
                text(
                    "SELECT sale_id, product_id, quantity, unit_price::text, name "
                    "FROM inventory.reservation_lines ORDER BY quantity DESC"
                )
            ).all()
        assert [tuple(h) for h in headers] == [
            (released, "released", "sales", True, None),
            (reserved, "reserved", "sales", False, None),
        ]
        assert [tuple(line) for line in lines] == [
            (reserved, product, 2, "12.50", "Beans"),
            (released, product, 1, "11.00", "Old beans"),
        ]

        # Down again: one line per reservation fits revision 0001; a second line does not.
        config = alembic_config("inventory_service", url)
        command.downgrade(config, "0001")
        with engine.connect() as conn:
            back = conn.execute(
                text("SELECT sale_id, product_id, quantity FROM inventory.reservations")
            ).all()
        assert sorted(back) == sorted([(reserved, product, 2), (released, product, 1)])
        upgrade("inventory_service", url)
        with engine.begin() as conn:
            second = conn.execute(
                text(
                    "INSERT INTO inventory.products (name, category, price) "
                    "VALUES ('Mug', 'food', 3.00) RETURNING id"
                )
            ).scalar_one()
            conn.execute(
                text("INSERT INTO inventory.reservation_lines VALUES (:s, :p, 1, 3.00, 'Mug')"),
                {"s": reserved, "p": second},
            )
        with pytest.raises(RuntimeError, match="several lines"):
            command.downgrade(config, "0001")
        engine.dispose()
