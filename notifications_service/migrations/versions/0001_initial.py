"""initial notifications schema: notifications and the consumer inbox

Revision ID: 0001
Revises:
Create Date: 2026-12-07 04:05:00.000000
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
        "notifications",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("body", sa.String(length=500), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("event_id", name=op.f("uq_notifications_event_id")),
        schema="notifications",
    )
    op.create_index(
        "ix_notifications_customer_newest",
        "notifications",
        ["customer_id", "id"],
        unique=False,
        schema="notifications",
    )
    op.create_index(
        "ix_notifications_customer_unread",
        "notifications",
        ["customer_id", "id"],
        unique=False,
        schema="notifications",
        postgresql_where=sa.text("read_at IS NULL"),
    )
    op.create_table(
        "inbox",
        sa.Column("consumer_group", sa.String(length=100), nullable=False),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("stream", sa.String(length=128), nullable=False),
        sa.Column("entry_id", sa.String(length=40), nullable=False),
        sa.Column(
            "applied_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("consumer_group", "event_id", name=op.f("pk_inbox")),
        schema="notifications",
    )


def downgrade() -> None:
    op.drop_table("inbox", schema="notifications")
    op.drop_index(
        "ix_notifications_customer_unread", table_name="notifications", schema="notifications"
    )
    op.drop_index(
        "ix_notifications_customer_newest", table_name="notifications", schema="notifications"
    )
    op.drop_table("notifications", schema="notifications")
