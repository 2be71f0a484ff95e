"""initial customers schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21 18:57:11.758383
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
        "customers",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("username", sa.String(length=32), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("age", sa.SmallInteger(), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=False),
        sa.Column("gender", sa.String(length=20), nullable=False),
        sa.Column("marital_status", sa.String(length=20), nullable=False),
        sa.Column("role", sa.String(length=16), server_default="customer", nullable=False),
        sa.Column("balance", sa.Numeric(precision=12, scale=2), server_default="0", nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default="true", nullable=False),
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
        sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "gender IN ('female', 'male', 'non_binary', 'prefer_not_to_say')",
            name=op.f("ck_customers_gender_known"),
        ),
        sa.CheckConstraint(
            "marital_status IN ('single', 'married', 'divorced', 'widowed')",
            name=op.f("ck_customers_marital_status_known"),
        ),
        sa.CheckConstraint("role IN ('customer', 'admin')", name=op.f("ck_customers_role_known")),
        sa.CheckConstraint("age BETWEEN 18 AND 120", name=op.f("ck_customers_age_range")),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_customers_balance_not_negative")),
        sa.CheckConstraint(
            "username = lower(username)", name=op.f("ck_customers_username_lowercase")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("email", name=op.f("uq_customers_email")),
        sa.UniqueConstraint("username", name=op.f("uq_customers_username")),
        schema="customers",
    )
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
        schema="customers",
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("private_pem", sa.Text(), nullable=False),
        sa.Column("public_jwk", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
        schema="customers",
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("balance_after", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("sale_id", sa.UUID(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(kind IN ('charge', 'refund_credit')) = (amount > 0)",
            name=op.f("ck_ledger_entries_sign_matches_kind"),
        ),
        sa.CheckConstraint(
            "(kind IN ('sale_debit', 'refund_credit')) = (sale_id IS NOT NULL)",
            name=op.f("ck_ledger_entries_sale_id_for_sale_kinds"),
        ),
        sa.CheckConstraint(
            "kind IN ('charge', 'deduct', 'sale_debit', 'refund_credit')",
            name=op.f("ck_ledger_entries_kind_known"),
        ),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_ledger_entries_amount_not_zero")),
        sa.CheckConstraint(
            "balance_after >= 0", name=op.f("ck_ledger_entries_balance_after_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.customers.id"],
            name=op.f("fk_ledger_entries_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        schema="customers",
    )
    op.create_index(
        "ix_ledger_entries_customer_id_id",
        "ledger_entries",
        ["customer_id", "id"],
        unique=False,
        schema="customers",
    )
    op.create_index(
        "uq_ledger_entries_sale_kind",
        "ledger_entries",
        ["sale_id", "kind"],
        unique=True,
        schema="customers",
        postgresql_where=sa.text("sale_id IS NOT NULL"),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("jti", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.customers.id"],
            name=op.f("fk_refresh_tokens_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_refresh_tokens")),
        schema="customers",
    )
    op.create_index(
        op.f("ix_refresh_tokens_customer_id"),
        "refresh_tokens",
        ["customer_id"],
        unique=False,
        schema="customers",
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_refresh_tokens_customer_id"), table_name="refresh_tokens", schema="customers"
    )
    op.drop_table("refresh_tokens", schema="customers")
    op.drop_index(
        "uq_ledger_entries_sale_kind",
        table_name="ledger_entries",
        schema="customers",
        postgresql_where=sa.text("sale_id IS NOT NULL"),
    )
    op.drop_index(
        "ix_ledger_entries_customer_id_id", table_name="ledger_entries", schema="customers"
    )
    op.drop_table("ledger_entries", schema="customers")
    op.drop_table("signing_keys", schema="customers")
    op.drop_table("idempotency_keys", schema="customers")
    op.drop_table("customers", schema="customers")
