"""events: the outbox of product events, the inbox of review events, and products' ratings

``outbox`` is :func:`shopkit.events.outbox.outbox_table` (stock changed, product
created and archived, written in the transaction of each change); ``inbox`` is
:func:`shopkit.events.consumer.inbox_table` (the review events the ``inventory``
group applied); ``review_ratings`` keeps each review's last known state, and
products gain ``rating_count`` and ``rating_sum`` with the index of
``sort=rating`` (docs/events.rst). Existing products start unrated; the
consumer group, new, reads the review stream from its start.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "inventory"
RATING_AVERAGE_SQL = "(rating_sum::numeric / NULLIF(rating_count, 0))"


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("aggregate", sa.String(64), nullable=False),
        sa.Column("aggregate_id", sa.String(128), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("traceparent", sa.String(64)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text()),
        sa.UniqueConstraint("aggregate", "aggregate_id", "sequence"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["id"],
        schema=SCHEMA,
        postgresql_where=sa.text("published_at IS NULL"),
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
        schema=SCHEMA,
    )
    op.create_table(
        "review_ratings",
        sa.Column("review_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name=op.f("ck_review_ratings_rating_range")),
        sa.PrimaryKeyConstraint("review_id", name=op.f("pk_review_ratings")),
        schema=SCHEMA,
    )
    op.create_index(
        op.f("ix_review_ratings_product_id"),
        "review_ratings",
        ["product_id"],
        schema=SCHEMA,
        postgresql_where=sa.text("counted"),
    )
    op.add_column(
        "products",
        sa.Column("rating_count", sa.Integer(), server_default="0", nullable=False),
        schema=SCHEMA,
    )
    op.add_column(
        "products",
        sa.Column("rating_sum", sa.Integer(), server_default="0", nullable=False),
        schema=SCHEMA,
    )
    op.create_check_constraint(
        op.f("ck_products_rating_sum_in_range"),
        "products",
        "rating_sum BETWEEN 1 * rating_count AND 5 * rating_count",
        schema=SCHEMA,
    )
    op.create_index(
        "ix_products_rating",
        "products",
        [sa.text(f"{RATING_AVERAGE_SQL} DESC NULLS LAST"), sa.text("rating_count DESC"), "id"],
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_index("ix_products_rating", table_name="products", schema=SCHEMA)
    op.drop_constraint(
        op.f("ck_products_rating_sum_in_range"), "products", schema=SCHEMA, type_="check"
    )
    op.drop_column("products", "rating_sum", schema=SCHEMA)
    op.drop_column("products", "rating_count", schema=SCHEMA)
    op.drop_index(op.f("ix_review_ratings_product_id"), table_name="review_ratings", schema=SCHEMA)
    op.drop_table("review_ratings", schema=SCHEMA)
    op.drop_table("inbox", schema=SCHEMA)
    op.drop_index("ix_outbox_unpublished", table_name="outbox", schema=SCHEMA)
    op.drop_table("outbox", schema=SCHEMA)
