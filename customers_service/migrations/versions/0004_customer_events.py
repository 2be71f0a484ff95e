"""customer events: announce the customers registered before customers emitted them

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 07:00:00

From this revision on, registering, changing the name or email of, deactivating and
reactivating a customer write a customer event into the outbox (customers_service.events).
The customers already there have none, so their contact data would never reach the
notifications service. This data migration writes, once, a ``shop.customer.registered.v1``
event for each of them (and ``deactivated`` right after it for a deactivated account), as
``flask --app customers_service events backfill-customers`` does; the relay publishes them.
It is plain SQL on purpose: a migration must not depend on code that changes later.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # One statement, so both halves see the same customers. Rows are inserted in the
    # order given (as shopkit.events.outbox.emit_many relies on too): every registered
    # event before any deactivated one, so the relay, publishing in id order, sends each
    # customer's registered event first. The customer had no customer event (NOT
    # EXISTS), so these take its sequences 1 and 2.
    op.execute(
        """
        WITH unannounced AS (
            SELECT c.id, c.username, c.full_name, c.email, c.is_active
            FROM customers.customers c
            WHERE c.role = 'customer'
              AND NOT EXISTS (SELECT 1 FROM customers.outbox o
                              WHERE o.aggregate = 'customer' AND o.aggregate_id = c.id::text)
        ), announcements AS (
            SELECT u.id, 1 AS sequence, 'shop.customer.registered.v1' AS type,
                   jsonb_build_object('customer_id', u.id, 'username', u.username,
                                      'full_name', u.full_name, 'email', u.email) AS payload
            FROM unannounced u
            UNION ALL
            SELECT u.id, 2, 'shop.customer.deactivated.v1', jsonb_build_object('customer_id', u.id)
            FROM unannounced u WHERE NOT u.is_active
        )
        INSERT INTO customers.outbox (event_id, aggregate, aggregate_id, sequence, type, payload)
        SELECT gen_random_uuid(), 'customer', a.id::text, a.sequence, a.type, a.payload
        FROM announcements a
        ORDER BY a.sequence, a.id
        """
    )


def downgrade() -> None:
    # Events once written may be published and applied already: they stay.
    pass
