"""login throttling, refresh-token families, emails no longer unique

Revision ID: 0002
Revises: 0001
Create Date: 2027-01-10 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "throttle_buckets",
        sa.Column("bucket", sa.String(length=200), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("bucket", name=op.f("pk_throttle_buckets")),
        schema="customers",
    )
    op.add_column(
        "refresh_tokens",
        sa.Column("family_id", postgresql.UUID(as_uuid=True), nullable=True),
        schema="customers",
    )
    op.execute("UPDATE customers.refresh_tokens SET family_id = jti WHERE family_id IS NULL")
    op.alter_column("refresh_tokens", "family_id", nullable=False, schema="customers")
    op.create_index(
        op.f("ix_refresh_tokens_family_id"),
        "refresh_tokens",
        ["family_id"],
        unique=False,
        schema="customers",
    )
    # An email is contact data, not an identity: a registration must not reveal that
    # another account uses it (issue 14, finding 3).
    op.drop_constraint(op.f("uq_customers_email"), "customers", schema="customers")
    op.create_index(
        op.f("ix_customers_email"), "customers", ["email"], unique=False, schema="customers"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_customers_email"), table_name="customers", schema="customers")
    op.create_unique_constraint(
        op.f("uq_customers_email"), "customers", ["email"], schema="customers"
    )
    op.drop_index(
        op.f("ix_refresh_tokens_family_id"), table_name="refresh_tokens", schema="customers"
    )
    op.drop_column("refresh_tokens", "family_id", schema="customers")
    op.drop_table("throttle_buckets", schema="customers")
