"""orders: lines, history, shipment and cancellation, carts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 03:40:00

Every existing sale becomes a one-line order: its line is copied into
``sale_lines`` and its history is rebuilt from its timestamps.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "'pending', 'completed', 'failed', 'shipped', 'delivered', 'cancelling', 'cancelled'"


def upgrade() -> None:
    op.alter_column("sales", "product_id", nullable=True, schema="sales")
    op.alter_column("sales", "quantity", nullable=True, schema="sales")
    op.alter_column(
        "sales",
        "total",
        type_=sa.Numeric(17, 2),
        existing_type=sa.Numeric(15, 2),
        schema="sales",
    )
    add = [
        sa.Column("line_count", sa.Integer(), server_default="1", nullable=False),
        sa.Column("failure_detail", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("from_cart", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "history",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
        sa.Column("carrier", sa.String(length=100), nullable=True),
        sa.Column("tracking_number", sa.String(length=100), nullable=True),
        sa.Column("cancel_key", sa.String(length=200), nullable=True),
        sa.Column("shipped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
    ]
    for column in add:
        op.add_column("sales", column, schema="sales")
    op.drop_constraint("ck_sales_status_known", "sales", schema="sales")
    op.create_check_constraint(
        op.f("ck_sales_status_known"), "sales", f"status IN ({STATUSES})", schema="sales"
    )
    op.drop_constraint("ck_sales_completed_has_price", "sales", schema="sales")
    op.create_check_constraint(
        op.f("ck_sales_paid_has_total"),
        "sales",
        "status IN ('pending', 'failed') OR total IS NOT NULL",
        schema="sales",
    )
    op.create_check_constraint(
        op.f("ck_sales_line_count_range"), "sales", "line_count BETWEEN 1 AND 50", schema="sales"
    )
    op.drop_index("ix_sales_pending_updated_at", table_name="sales", schema="sales")
    op.drop_index("ix_sales_product_id_customer_id", table_name="sales", schema="sales")
    op.create_index(
        "ix_sales_unsettled_updated_at",
        "sales",
        ["updated_at"],
        unique=False,
        schema="sales",
        postgresql_where=sa.text("status IN ('pending', 'cancelling')"),
    )
    op.create_index(
        "ix_sales_status_created_at",
        "sales",
        ["status", "created_at"],
        unique=False,
        schema="sales",
    )

    op.create_table(
        "sale_lines",
        sa.Column("sale_id", sa.UUID(), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("product_name", sa.String(length=200), nullable=True),
        sa.Column("unit_price", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_sale_lines_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["sale_id"],
            ["sales.sales.id"],
            name=op.f("fk_sale_lines_sale_id_sales"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sale_id", "product_id", name=op.f("pk_sale_lines")),
        schema="sales",
    )
    op.create_index(
        "ix_sale_lines_product_id", "sale_lines", ["product_id"], unique=False, schema="sales"
    )
    op.create_table(
        "cart_items",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("quantity BETWEEN 1 AND 100", name=op.f("ck_cart_items_quantity_range")),
        sa.PrimaryKeyConstraint("customer_id", "product_id", name=op.f("pk_cart_items")),
        schema="sales",
    )

    # Existing sales become one-line orders with a history rebuilt from their timestamps.
    op.execute(
        """
        INSERT INTO sales.sale_lines (sale_id, product_id, position, quantity, product_name,
                                      unit_price)
        SELECT id, product_id, 0, quantity, product_name, unit_price FROM sales.sales
        """
    )
    op.execute(
        """
        UPDATE sales.sales SET history =
            jsonb_build_array(jsonb_build_object('status', 'pending', 'at', created_at))
            || CASE WHEN status = 'pending' THEN '[]'::jsonb
                    ELSE jsonb_build_array(jsonb_build_object(
                        'status', status, 'at', coalesce(completed_at, updated_at)))
               END
        """
    )


def downgrade() -> None:
    # Orders of several lines, or in a state the old schema does not know, cannot go back
    # without losing what happened to them: refuse rather than rewrite history.
    blocking = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT count(*) FROM sales.sales WHERE line_count > 1 OR status IN "
                "('shipped', 'delivered', 'cancelling', 'cancelled')"
            )
        )
        .scalar_one()
    )
    if blocking:
        raise RuntimeError(
            f"{blocking} orders have several lines or a shipped/delivered/cancelled status; "
            "the schema before 0003 cannot hold them"
        )
    op.drop_table("cart_items", schema="sales")
    op.drop_index("ix_sale_lines_product_id", table_name="sale_lines", schema="sales")
    op.drop_table("sale_lines", schema="sales")
    op.drop_index("ix_sales_status_created_at", table_name="sales", schema="sales")
    op.drop_index("ix_sales_unsettled_updated_at", table_name="sales", schema="sales")
    op.create_index(
        "ix_sales_product_id_customer_id",
        "sales",
        ["product_id", "customer_id"],
        unique=False,
        schema="sales",
    )
    op.create_index(
        "ix_sales_pending_updated_at",
        "sales",
        ["updated_at"],
        unique=False,
        schema="sales",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_constraint("ck_sales_line_count_range", "sales", schema="sales")
    op.drop_constraint("ck_sales_paid_has_total", "sales", schema="sales")
    op.drop_constraint("ck_sales_status_known", "sales", schema="sales")
    op.create_check_constraint(
        op.f("ck_sales_status_known"),
        "sales",
        "status IN ('pending', 'completed', 'failed')",
        schema="sales",
    )
    op.create_check_constraint(
        op.f("ck_sales_completed_has_price"),
        "sales",
        "status <> 'completed' OR (total IS NOT NULL AND unit_price IS NOT NULL)",
        schema="sales",
    )
    for name in (
        "cancelled_at",
        "delivered_at",
        "shipped_at",
        "cancel_key",
        "tracking_number",
        "carrier",
        "history",
        "from_cart",
        "failure_detail",
        "line_count",
    ):
        op.drop_column("sales", name, schema="sales")
    op.alter_column(
        "sales", "total", type_=sa.Numeric(15, 2), existing_type=sa.Numeric(17, 2), schema="sales"
    )
    op.alter_column("sales", "quantity", nullable=False, schema="sales")
    op.alter_column("sales", "product_id", nullable=False, schema="sales")
