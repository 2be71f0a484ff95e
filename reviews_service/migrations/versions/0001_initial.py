"""initial reviews schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21 19:10:55.764438
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("username", sa.String(length=32), nullable=False),
        sa.Column("rating", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.String(length=2000), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
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
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'flagged', 'rejected')",
            name=op.f("ck_reviews_status_known"),
        ),
        sa.CheckConstraint(
            "char_length(comment) BETWEEN 1 AND 2000", name=op.f("ck_reviews_comment_length")
        ),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name=op.f("ck_reviews_rating_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        sa.UniqueConstraint(
            "customer_id", "product_id", name=op.f("uq_reviews_customer_id_product_id")
        ),
        schema="reviews",
    )
    op.create_index(
        "ix_reviews_product_id_status_created_at",
        "reviews",
        ["product_id", "status", "created_at"],
        unique=False,
        schema="reviews",
    )
    op.create_index(
        "ix_reviews_status_updated_at",
        "reviews",
        ["status", "updated_at"],
        unique=False,
        schema="reviews",
    )
    op.create_index(
        "ix_reviews_username_created_at",
        "reviews",
        ["username", "created_at"],
        unique=False,
        schema="reviews",
    )
    op.create_table(
        "moderation_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("review_id", sa.BigInteger(), nullable=False),
        sa.Column("moderator", sa.String(length=120), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("note", sa.String(length=1000), nullable=True),
        sa.Column("from_status", sa.String(length=16), nullable=False),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "action IN ('approve', 'flag', 'reject')", name=op.f("ck_moderation_log_action_known")
        ),
        sa.CheckConstraint(
            "from_status IN ('pending', 'approved', 'flagged', 'rejected')",
            name=op.f("ck_moderation_log_from_status_known"),
        ),
        sa.CheckConstraint(
            "to_status IN ('pending', 'approved', 'flagged', 'rejected')",
            name=op.f("ck_moderation_log_to_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["review_id"],
            ["reviews.reviews.id"],
            name=op.f("fk_moderation_log_review_id_reviews"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moderation_log")),
        schema="reviews",
    )
    op.create_index(
        "ix_moderation_log_review_id_id",
        "moderation_log",
        ["review_id", "id"],
        unique=False,
        schema="reviews",
    )


def downgrade() -> None:
    op.drop_index("ix_moderation_log_review_id_id", table_name="moderation_log", schema="reviews")
    op.drop_table("moderation_log", schema="reviews")
    op.drop_index("ix_reviews_username_created_at", table_name="reviews", schema="reviews")
    op.drop_index("ix_reviews_status_updated_at", table_name="reviews", schema="reviews")
    op.drop_index("ix_reviews_product_id_status_created_at", table_name="reviews", schema="reviews")
    op.drop_table("reviews", schema="reviews")
