"""initial sales schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21 19:10:35.541524
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("caller", sa.String(length=120), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=False),
        sa.Column("response_body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("caller", "key", name=op.f("pk_idempotency_keys")),
        schema="sales",
    )
    op.create_table(
        "sales",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("username", sa.String(length=32), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("product_name", sa.String(length=200), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("total", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
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
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(status = 'failed') = (failure_code IS NOT NULL)",
            name=op.f("ck_sales_failed_has_code"),
        ),
        sa.CheckConstraint(
            "status <> 'completed' OR (total IS NOT NULL AND unit_price IS NOT NULL)",
            name=op.f("ck_sales_completed_has_price"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'completed', 'failed')", name=op.f("ck_sales_status_known")
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_sales_quantity_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sales")),
        schema="sales",
    )
    op.create_index("ix_sales_created_at", "sales", ["created_at"], unique=False, schema="sales")
    op.create_index(
        "ix_sales_customer_id_created_at",
        "sales",
        ["customer_id", "created_at"],
        unique=False,
        schema="sales",
    )
    op.create_index(
        "ix_sales_username_created_at",
        "sales",
        ["username", "created_at"],
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
    op.create_index(
        "ix_sales_product_id_customer_id",
        "sales",
        ["product_id", "customer_id"],
        unique=False,
        schema="sales",
    )
    op.create_index(
        "uq_sales_customer_key",
        "sales",
        ["customer_id", "idempotency_key"],
        unique=True,
        schema="sales",
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_table(
        "saga_steps",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("sale_id", sa.UUID(), nullable=False),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column(
            "detail", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["sale_id"],
            ["sales.sales.id"],
            name=op.f("fk_saga_steps_sale_id_sales"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saga_steps")),
        schema="sales",
    )
    op.create_index(
        op.f("ix_saga_steps_sale_id"), "saga_steps", ["sale_id"], unique=False, schema="sales"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_saga_steps_sale_id"), table_name="saga_steps", schema="sales")
    op.drop_table("saga_steps", schema="sales")
    op.drop_index(
        "uq_sales_customer_key",
        table_name="sales",
        schema="sales",
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.drop_index("ix_sales_product_id_customer_id", table_name="sales", schema="sales")
    op.drop_index("ix_sales_username_created_at", table_name="sales", schema="sales")
    op.drop_index(
        "ix_sales_pending_updated_at",
        table_name="sales",
        schema="sales",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("ix_sales_customer_id_created_at", table_name="sales", schema="sales")
    op.drop_index("ix_sales_created_at", table_name="sales", schema="sales")
    op.drop_table("sales", schema="sales")
    op.drop_table("idempotency_keys", schema="sales")
