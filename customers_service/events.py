"""The wallet events customers emits: one per ledger entry, in the entry's transaction.

Every balance change writes a ledger entry (:mod:`customers_service.wallet`); the
same transaction writes its event into the customers outbox
(:data:`customers_service.models.OUTBOX`, :mod:`shopkit.events.outbox`): a top-up
is ``shop.wallet.credited.v1``, a sale's debit (or an admin's deduction)
``debited``, a sale's refund ``refunded``. The relay publishing them runs in
each worker (:mod:`shopkit.events.service_relay`).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from customers_service.models import OUTBOX, LedgerEntry
from shopkit.events.outbox import NewEvent, emit_many

#: The event type of each ledger kind.
TYPES = {
    "charge": "shop.wallet.credited.v1",
    "deduct": "shop.wallet.debited.v1",
    "sale_debit": "shop.wallet.debited.v1",
    "refund_credit": "shop.wallet.refunded.v1",
}


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
