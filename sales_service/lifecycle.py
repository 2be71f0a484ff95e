"""The order's life after payment: ``completed → shipped → delivered`` (admin).

Each transition is one conditional ``UPDATE ... WHERE status = <from>``, so
two racing transitions of one order (a shipment and a cancellation, say)
can never both happen: exactly one finds the status it needs. Every
transition is appended to the order's ``history`` and writes its event
(:mod:`sales_service.events`) in the same transaction.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from sales_service import events
from sales_service.models import COMPLETED, DELIVERED, SHIPPED, Sale
from sales_service.saga_run import history_entry
from shopkit.db import transaction
from shopkit.errors import Conflict, NotFound

_sales = Sale.__table__


def invalid_transition(sale: Sale, wanted: str) -> Conflict:
    """409 ``invalid_transition``: the order cannot become ``wanted`` from where it is."""
    return Conflict(
        "invalid_transition",
        f"Order {sale.id} is {sale.status}; it cannot become {wanted} from there.",
        sale_id=str(sale.id),
        sale_status=sale.status,
    )


def _transition(
    session: Session, sale_id: uuid.UUID, source: str, target: str, **values: Any
) -> Sale:
    now = datetime.now(UTC)
    moved = session.execute(
        update(_sales)
        .where(_sales.c.id == sale_id, _sales.c.status == source)
        .values(
            status=target,
            updated_at=now,
            history=_sales.c.history.op("||")(bindparam("entry", type_=JSONB)),
            **{f"{target}_at": now},
            **values,
        )
        .returning(_sales.c.id),
        {"entry": [history_entry(target, now)]},
    ).first()
    sale = session.get(Sale, sale_id, populate_existing=True)
    if sale is None:
        raise NotFound(f"No sale {sale_id}.")
    if moved is None:
        raise invalid_transition(sale, target)
    return sale


def ship(
    session: Session, sale_id: uuid.UUID, carrier: str | None, tracking_number: str | None
) -> Sale:
    """Mark a completed order shipped, with its carrier and tracking number if known."""
    with transaction(session):
        sale = _transition(
            session, sale_id, COMPLETED, SHIPPED, carrier=carrier, tracking_number=tracking_number
        )
        events.emit_shipped(session, sale)
        return sale


def deliver(session: Session, sale_id: uuid.UUID) -> Sale:
    """Mark a shipped order delivered."""
    with transaction(session):
        sale = _transition(session, sale_id, SHIPPED, DELIVERED)
        events.emit_delivered(session, sale)
        return sale
