"""a reservation is a header per sale plus its lines; stock can be returned

Moves every one-line reservation's product, quantity, price and name into
``reservation_lines`` (data kept), leaves the header with its status and
times, and adds the ``returned`` status with ``returned_at`` (the stock of a
cancelled order). Downgrading is refused while a reservation has more than
one line (it would lose them); a ``returned`` reservation becomes
``released`` (its stock is back either way).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "inventory"


def upgrade() -> None:
    op.create_table(
        "reservation_lines",
        sa.Column("sale_id", sa.UUID(), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_reservation_lines_quantity_positive")),
        sa.CheckConstraint("unit_price > 0", name=op.f("ck_reservation_lines_unit_price_positive")),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["inventory.products.id"],
            name=op.f("fk_reservation_lines_product_id_products"),
        ),
        sa.ForeignKeyConstraint(
            ["sale_id"],
            ["inventory.reservations.sale_id"],
            name=op.f("fk_reservation_lines_sale_id_reservations"),
        ),
        sa.PrimaryKeyConstraint("sale_id", "product_id", name=op.f("pk_reservation_lines")),
        schema=SCHEMA,
    )
    op.execute(
        "INSERT INTO inventory.reservation_lines (sale_id, product_id, quantity, unit_price, name) "
        "SELECT sale_id, product_id, quantity, unit_price, name FROM inventory.reservations"
    )
    op.create_index(
        "ix_reservation_lines_product_id_sale_id",
        "reservation_lines",
        ["product_id", "sale_id"],
        unique=False,
        schema=SCHEMA,
    )
    op.drop_index("ix_reservations_product_id_created_at", table_name="reservations", schema=SCHEMA)
    for column in ("product_id", "quantity", "unit_price", "name"):
        # Their CHECK constraints and the foreign key go with them.
        op.drop_column("reservations", column, schema=SCHEMA)
    op.add_column(
        "reservations",
        sa.Column("returned_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )
    op.drop_constraint("ck_reservations_status_known", "reservations", schema=SCHEMA)
    op.create_check_constraint(
        op.f("ck_reservations_status_known"),
        "reservations",
        "status IN ('reserved', 'released', 'returned')",
        schema=SCHEMA,
    )
    op.create_check_constraint(
        op.f("ck_reservations_returned_at_when_returned"),
        "reservations",
        "(status = 'returned') = (returned_at IS NOT NULL)",
        schema=SCHEMA,
    )


def downgrade() -> None:
    bind = op.get_bind()
    several = bind.execute(
        sa.text(
            "SELECT count(*) FROM (SELECT sale_id FROM inventory.reservation_lines "
            "GROUP BY sale_id HAVING count(*) > 1) AS multi"
        )
    ).scalar_one()
    if several:
        raise RuntimeError(
            f"{several} reservations have several lines; revision 0001 cannot hold them"
        )
    op.drop_constraint("ck_reservations_returned_at_when_returned", "reservations", schema=SCHEMA)
    op.drop_constraint("ck_reservations_status_known", "reservations", schema=SCHEMA)
    op.execute(
        "UPDATE inventory.reservations SET status = 'released', released_at = returned_at "
        "WHERE status = 'returned'"
    )
    op.drop_column("reservations", "returned_at", schema=SCHEMA)
    op.create_check_constraint(
        op.f("ck_reservations_status_known"),
        "reservations",
        "status IN ('reserved', 'released')",
        schema=SCHEMA,
    )
    op.add_column("reservations", sa.Column("product_id", sa.BigInteger()), schema=SCHEMA)
    op.add_column("reservations", sa.Column("quantity", sa.Integer()), schema=SCHEMA)
    op.add_column(
        "reservations", sa.Column("unit_price", sa.Numeric(precision=12, scale=2)), schema=SCHEMA
    )
    op.add_column("reservations", sa.Column("name", sa.String(length=200)), schema=SCHEMA)
    op.execute(
        "UPDATE inventory.reservations AS r SET product_id = l.product_id, "
        "quantity = l.quantity, unit_price = l.unit_price, name = l.name "
        "FROM inventory.reservation_lines AS l WHERE l.sale_id = r.sale_id"
    )
    for column in ("product_id", "quantity", "unit_price", "name"):
        op.alter_column("reservations", column, nullable=False, schema=SCHEMA)
    op.create_check_constraint(
        op.f("ck_reservations_quantity_positive"), "reservations", "quantity > 0", schema=SCHEMA
    )
    op.create_check_constraint(
        op.f("ck_reservations_unit_price_positive"),
        "reservations",
        "unit_price > 0",
        schema=SCHEMA,
    )
    op.create_foreign_key(
        op.f("fk_reservations_product_id_products"),
        "reservations",
        "products",
        ["product_id"],
        ["id"],
        source_schema=SCHEMA,
        referent_schema=SCHEMA,
    )
    op.create_index(
        "ix_reservations_product_id_created_at",
        "reservations",
        ["product_id", "created_at"],
        unique=False,
        schema=SCHEMA,
    )
    op.drop_index(
        "ix_reservation_lines_product_id_sale_id", table_name="reservation_lines", schema=SCHEMA
    )
    op.drop_table("reservation_lines", schema=SCHEMA)
