"""The events customers emits, each written in the transaction of the change it tells.

**Wallet events**: every balance change writes a ledger entry
(:mod:`customers_service.wallet`); the same transaction writes its event into the
customers outbox (:data:`customers_service.models.OUTBOX`, :mod:`shopkit.events.outbox`):
a top-up is ``shop.wallet.credited.v1``, a sale's debit (or an admin's deduction)
``debited``, a sale's refund ``refunded``.

**Customer events** carry a customer's contact data, so that the notifications
service can address its mails without calling customers (event-carried state):
``shop.customer.registered.v1`` and ``updated`` (id, username, full name and
email; ``updated`` only when the name or the email changed), ``deactivated`` and
``reactivated`` (id only). Only accounts of role ``customer`` are told: admins get
no notifications. The stream therefore holds personal data (docs/events.rst,
"Personal data on the broker"); nothing here logs it.

The relay publishing them runs in each worker (:mod:`shopkit.events.service_relay`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import String, cast, exists, select
from sqlalchemy.orm import Session

from customers_service.models import OUTBOX, Customer, LedgerEntry
from shopkit.events.outbox import NewEvent, emit_many

#: The event type of each ledger kind.
TYPES = {
    "charge": "shop.wallet.credited.v1",
    "deduct": "shop.wallet.debited.v1",
    "sale_debit": "shop.wallet.debited.v1",
    "refund_credit": "shop.wallet.refunded.v1",
}

REGISTERED = "shop.customer.registered.v1"
UPDATED = "shop.customer.updated.v1"
DEACTIVATED = "shop.customer.deactivated.v1"
REACTIVATED = "shop.customer.reactivated.v1"
#: The profile fields whose change is told by ``shop.customer.updated.v1``.
CONTACT_FIELDS = ("full_name", "email")
#: Customers per statement when the backfill announces many.
BACKFILL_BATCH = 500


def wallet_event(entry: LedgerEntry) -> NewEvent:
    """The event telling ledger ``entry`` (its amount as a positive sum of money)."""
    data = {
        "customer_id": entry.customer_id,
        "amount": f"{abs(entry.amount):.2f}",
        "balance": f"{entry.balance_after:.2f}",
        "order_id": None if entry.sale_id is None else str(entry.sale_id),
    }
    return NewEvent(TYPES[entry.kind], entry.customer_id, data)


def emit_wallet_events(session: Session, entries: Iterable[LedgerEntry]) -> None:
    """Write the events of ledger ``entries`` in the session's transaction."""
    emit_many(session, OUTBOX, [wallet_event(entry) for entry in entries])


def told(customer: Customer) -> bool:
    """Whether ``customer``'s changes are told as customer events (customers, not admins)."""
    return customer.role == "customer"


def customer_event(type_name: str, customer: Customer) -> NewEvent:
    """The customer event ``type_name`` about ``customer`` (its contact data if the type has it)."""
    data: dict[str, object] = {"customer_id": customer.id}
    if type_name in (REGISTERED, UPDATED):
        data.update(username=customer.username, full_name=customer.full_name, email=customer.email)
    return NewEvent(type_name, customer.id, data)


def emit_customer_events(session: Session, type_name: str, customers: Sequence[Customer]) -> None:
    """Write one ``type_name`` event per customer account in ``customers``, in one batch."""
    emit_many(session, OUTBOX, [customer_event(type_name, c) for c in customers if told(c)])


def backfill_customers(session: Session, *, every: bool = False) -> int:
    """Announce existing customers in the outbox, a batch per transaction; how many.

    By default only the customers with no customer event in the outbox yet (registered
    before customers emitted them), so running it again writes nothing. ``every``
    announces every customer again with its current state, for a consumer that must
    rebuild its contacts after the stream's retention dropped the older events. Each
    gets ``registered`` and, if deactivated, ``deactivated`` right after it. Each batch
    of :data:`BACKFILL_BATCH` customers commits on its own (``session`` must have no
    transaction open); its rows are share-locked, so a concurrent profile change
    cannot slip between reading a customer and announcing it.
    """
    announced = 0
    after = 0
    while True:
        with session.begin():
            statement = (
                select(Customer)
                .where(Customer.role == "customer", Customer.id > after)
                .order_by(Customer.id)
                .limit(BACKFILL_BATCH)
                .with_for_update(read=True)
            )
            if not every:
                statement = statement.where(
                    ~exists().where(
                        OUTBOX.c.aggregate == "customer",
                        OUTBOX.c.aggregate_id == cast(Customer.id, String),
                    )
                )
            batch = list(session.scalars(statement))
            if not batch:
                return announced
            events = []
            for customer in batch:
                events.append(customer_event(REGISTERED, customer))
                if not customer.is_active:
                    events.append(customer_event(DEACTIVATED, customer))
            emit_many(session, OUTBOX, events)
        announced += len(batch)
        after = batch[-1].id
