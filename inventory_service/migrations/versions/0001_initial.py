"""initial inventory schema

Products (with stock and a generated, GIN-indexed search vector), reservations and
idempotency keys, plus ``inventory.search_query(text) -> tsquery``, which turns
a search string into a prefix query (see :mod:`inventory_service.models`).

Revision ID: 0001
Revises:
Create Date: 2026-11-21 19:00:40.037684
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# plainto_tsquery parses any input safely ("wire spea" -> 'wire' & 'spea'); a ':*'
# after each lexeme's closing quote makes it match longer words too.
SEARCH_QUERY = r"""
CREATE FUNCTION inventory.search_query(query text) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT regexp_replace(
        plainto_tsquery('simple'::regconfig, query)::text, '''( |$)', ''':*\1', 'g'
    )::tsquery
$$
"""

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
        schema="inventory",
    )
    op.create_table(
        "products",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("stock", sa.Integer(), server_default="0", nullable=False),
        sa.Column("archived", sa.Boolean(), server_default="false", nullable=False),
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(
                "to_tsvector('simple'::regconfig, (name::text || ' '::text) || description)",
                persisted=True,
            ),
            nullable=False,
        ),
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
            "category IN ('food', 'clothes', 'accessories', 'electronics')",
            name=op.f("ck_products_category_known"),
        ),
        sa.CheckConstraint("char_length(btrim(name)) > 0", name=op.f("ck_products_name_not_blank")),
        sa.CheckConstraint(
            "char_length(description) <= 5000", name=op.f("ck_products_description_length")
        ),
        sa.CheckConstraint("price > 0", name=op.f("ck_products_price_positive")),
        sa.CheckConstraint("stock <= 2000000000", name=op.f("ck_products_stock_limit")),
        sa.CheckConstraint("stock >= 0", name=op.f("ck_products_stock_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        schema="inventory",
    )
    op.execute(SEARCH_QUERY)
    op.execute(
        "COMMENT ON FUNCTION inventory.search_query(text) IS "
        "'Search text to tsquery: each word must begin a word of the product, in any order.'"
    )
    op.create_index(
        "ix_products_category_price",
        "products",
        ["category", "price"],
        unique=False,
        schema="inventory",
    )
    op.create_index(
        "ix_products_created_at_id",
        "products",
        ["created_at", "id"],
        unique=False,
        schema="inventory",
    )
    op.create_index(
        "ix_products_name_id", "products", ["name", "id"], unique=False, schema="inventory"
    )
    op.create_index("ix_products_price", "products", ["price"], unique=False, schema="inventory")
    op.create_index(
        "ix_products_search_vector",
        "products",
        ["search_vector"],
        unique=False,
        schema="inventory",
        postgresql_using="gin",
    )
    op.create_table(
        "reservations",
        sa.Column("sale_id", sa.UUID(), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="reserved", nullable=False),
        sa.Column("reserved_by", sa.String(length=120), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(status = 'released') = (released_at IS NOT NULL)",
            name=op.f("ck_reservations_released_at_when_released"),
        ),
        sa.CheckConstraint(
            "status IN ('reserved', 'released')", name=op.f("ck_reservations_status_known")
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_reservations_quantity_positive")),
        sa.CheckConstraint("unit_price > 0", name=op.f("ck_reservations_unit_price_positive")),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["inventory.products.id"],
            name=op.f("fk_reservations_product_id_products"),
        ),
        sa.PrimaryKeyConstraint("sale_id", name=op.f("pk_reservations")),
        schema="inventory",
    )
    op.create_index(
        "ix_reservations_product_id_created_at",
        "reservations",
        ["product_id", "created_at"],
        unique=False,
        schema="inventory",
    )
    op.create_index(
        "ix_reservations_status_created_at",
        "reservations",
        ["status", "created_at"],
        unique=False,
        schema="inventory",
    )


def downgrade() -> None:
    op.drop_index(
        "ix_reservations_status_created_at", table_name="reservations", schema="inventory"
    )
    op.drop_index(
        "ix_reservations_product_id_created_at", table_name="reservations", schema="inventory"
    )
    op.drop_table("reservations", schema="inventory")
    op.drop_index(
        "ix_products_search_vector",
        table_name="products",
        schema="inventory",
        postgresql_using="gin",
    )
    op.drop_index("ix_products_price", table_name="products", schema="inventory")
    op.drop_index("ix_products_name_id", table_name="products", schema="inventory")
    op.drop_index("ix_products_created_at_id", table_name="products", schema="inventory")
    op.drop_index("ix_products_category_price", table_name="products", schema="inventory")
    op.drop_table("products", schema="inventory")
    op.execute("DROP FUNCTION inventory.search_query(text)")
    op.drop_table("idempotency_keys", schema="inventory")
