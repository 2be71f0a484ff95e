"""one image per product

``product_images``: the image's bytes (at most 1 MiB), its media type (PNG,
JPEG, WebP or SVG, checked by content on upload), its SHA-256 (the ETag) and
size. A product has at most one image; an upload replaces it. Downgrading
drops the images.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "inventory"


def upgrade() -> None:
    op.create_table(
        "product_images",
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=40), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "media_type IN ('image/png', 'image/jpeg', 'image/webp', 'image/svg+xml')",
            name=op.f("ck_product_images_media_type_known"),
        ),
        sa.CheckConstraint(
            "octet_length(content) <= 1048576", name=op.f("ck_product_images_size_limit")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["inventory.products.id"],
            name=op.f("fk_product_images_product_id_products"),
        ),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_product_images")),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("product_images", schema=SCHEMA)
