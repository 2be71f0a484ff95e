"""mails: the sender's queue index holds its order, (next_attempt_at, id)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 05:00:00

The sender takes the oldest due mail, ``ORDER BY next_attempt_at, id LIMIT 1``. On
``next_attempt_at`` alone, the index did not give that order, so PostgreSQL scanned and
sorted every unsettled mail for each one it sent: a backlog (after an SMTP outage) cost
time in proportion to its size per mail. On both columns, the first due mail is read off
the index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "notifications"
UNSETTLED = "sent_at IS NULL AND skipped_at IS NULL"


def _unsent_index(*columns: str) -> None:
    op.drop_index("ix_mails_unsent", table_name="mails", schema=SCHEMA)
    op.create_index(
        "ix_mails_unsent", "mails", list(columns), schema=SCHEMA,
        postgresql_where=sa.text(UNSETTLED),
    )  # fmt: skip


def upgrade() -> None:
    _unsent_index("next_attempt_at", "id")


def downgrade() -> None:
    _unsent_index("next_attempt_at")
