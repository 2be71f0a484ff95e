"""contacts: each customer's address and name from customer events; mails wait for them

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 07:00:00

Mails were addressed to ``customer-<id>@localhost`` when recorded; now the sender looks the
customer's contact up when it sends (``recipient`` records where a mail went), waits while
it is unknown (``contact_waits``) and skips the mails of a deactivated customer
(``skipped_at``, ``skip_reason``). The sender's queue leaves skipped mails out.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "notifications"
UNSETTLED = "sent_at IS NULL AND skipped_at IS NULL"


def _index(name: str, column: str, where: str) -> None:
    op.create_index(name, "mails", [column], schema=SCHEMA, postgresql_where=sa.text(where))


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("customer_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("username", sa.String(length=32), nullable=True),
        sa.Column("full_name", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("profile_sequence", sa.BigInteger(), nullable=True),
        sa.Column("status_sequence", sa.BigInteger(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_contacts")),
        schema=SCHEMA,
    )
    op.alter_column("mails", "recipient", nullable=True, schema=SCHEMA)
    op.add_column(
        "mails",
        sa.Column("contact_waits", sa.Integer(), server_default="0", nullable=False),
        schema=SCHEMA,
    )
    op.add_column("mails", sa.Column("skipped_at", sa.DateTime(timezone=True)), schema=SCHEMA)
    op.add_column("mails", sa.Column("skip_reason", sa.String(length=120)), schema=SCHEMA)
    op.drop_index("ix_mails_unsent", table_name="mails", schema=SCHEMA)
    _index("ix_mails_unsent", "next_attempt_at", UNSETTLED)
    _index("ix_mails_unsent_customer", "customer_id", UNSETTLED)


def downgrade() -> None:
    op.drop_index("ix_mails_unsent_customer", table_name="mails", schema=SCHEMA)
    op.drop_index("ix_mails_unsent", table_name="mails", schema=SCHEMA)
    _index("ix_mails_unsent", "next_attempt_at", "sent_at IS NULL")
    op.drop_column("mails", "skip_reason", schema=SCHEMA)
    op.drop_column("mails", "skipped_at", schema=SCHEMA)
    op.drop_column("mails", "contact_waits", schema=SCHEMA)
    # A mail sent to nobody yet gets the address mails had before contacts.
    op.execute(
        "UPDATE notifications.mails SET recipient = 'customer-' || customer_id || '@localhost' "
        "WHERE recipient IS NULL"
    )
    op.alter_column("mails", "recipient", nullable=False, schema=SCHEMA)
    op.drop_table("contacts", schema=SCHEMA)
