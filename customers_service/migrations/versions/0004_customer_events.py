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

It must run before this version serves. It gives each customer the sequences 1 and 2
without the aggregate's advisory lock (shopkit.events.outbox.emit_many takes it), which
is safe only while nothing else writes customer events: the versions before this one
write none, and every deployment migrates before the new version serves (make run's
launcher, Compose's command before gunicorn, the Kubernetes init container; migrations
are serialised by shopkit.migrations' lock). Should a process of this version write a
customer event meanwhile (one started without migrating), the outbox's unique
(aggregate, aggregate_id, sequence) refuses the second sequence 1: one of the two
transactions fails (a failed migration runs again at the next start), and no order is
corrupted. The lock is not taken here: its keys are hashed in Python
(shopkit.db.advisory_key), and holding one per customer in one transaction would overflow
PostgreSQL's lock table on a large database.
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
