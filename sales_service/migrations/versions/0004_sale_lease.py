"""sale lease: a new or cancelling order belongs to its request until first driven

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:00:00

Recovery skips an order whose ``lease_until`` lies ahead, so it can never
take a sale between the commit that records it and its driver's lock.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "sales",
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        schema="sales",
    )


def downgrade() -> None:
    op.drop_column("sales", "lease_until", schema="sales")
