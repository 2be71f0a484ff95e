"""a sale's total holds 1,000 units at the largest price

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 22:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column(
        "sales",
        "total",
        type_=sa.Numeric(15, 2),
        existing_type=sa.Numeric(12, 2),
        schema="sales",
    )


def downgrade() -> None:
    op.alter_column(
        "sales",
        "total",
        type_=sa.Numeric(12, 2),
        existing_type=sa.Numeric(15, 2),
        schema="sales",
    )
