"""The order events sales emits, and the relay that publishes them.

Every change of an order's status writes its event into the sales outbox
(:data:`sales_service.models.OUTBOX`) in the same transaction as the change
(:mod:`shopkit.events.outbox`): an order recorded ``pending`` is
``shop.order.placed.v1``; a drive that settles it writes ``completed``,
``failed`` or ``cancelled``; an admin's transition writes ``shipped`` or
``delivered``. A batch of purchases writes its events with one
:func:`~shopkit.events.outbox.emit_many`, in its batched transaction.

The relay publishing them runs in each worker
(:mod:`shopkit.events.service_relay`, docs/events.rst).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from sales_service.models import CANCELLED, COMPLETED, FAILED, OUTBOX, Sale
from shopkit.events.outbox import NewEvent, emit, emit_many

PLACED = "shop.order.placed.v1"
SHIPPED = "shop.order.shipped.v1"
DELIVERED = "shop.order.delivered.v1"
#: The event of each status a drive settles an order in.
SETTLED = {
    COMPLETED: "shop.order.completed.v1",
    FAILED: "shop.order.failed.v1",
    CANCELLED: "shop.order.cancelled.v1",
}


def _base(sale: Sale) -> dict[str, Any]:
    return {"order_id": str(sale.id), "customer_id": sale.customer_id}


def placed(sale: Sale) -> NewEvent:
    """``shop.order.placed.v1`` of a sale just recorded (its lines are not priced yet)."""
    lines = [{"product_id": line.product_id, "quantity": line.quantity} for line in sale.lines]
    return NewEvent(PLACED, sale.id, {**_base(sale), "lines": lines})


def settled(sale: Sale) -> NewEvent:
    """The event of a sale a drive just settled (``completed``, ``failed``, ``cancelled``)."""
    data = _base(sale)
    if sale.status == COMPLETED:
        data["total"] = f"{sale.total:.2f}"
    elif sale.status == FAILED:
        data["failure_code"] = sale.failure_code or "unknown"
    return NewEvent(SETTLED[sale.status], sale.id, data)


def emit_placed(session: Session, sales: Iterable[Sale]) -> None:
    """Write ``placed`` for each sale just recorded, in the session's transaction."""
    emit_many(session, OUTBOX, [placed(sale) for sale in sales])


def emit_settled(session: Session, sales: Iterable[Sale]) -> None:
    """Write each settled sale's event, in the session's transaction."""
    emit_many(session, OUTBOX, [settled(sale) for sale in sales])


def emit_shipped(session: Session, sale: Sale) -> None:
    """Write ``shipped`` (with the carrier and tracking number, if known)."""
    data = {**_base(sale), "carrier": sale.carrier, "tracking_number": sale.tracking_number}
    emit(session, OUTBOX, SHIPPED, sale.id, data)


def emit_delivered(session: Session, sale: Sale) -> None:
    """Write ``delivered``."""
    emit(session, OUTBOX, DELIVERED, sale.id, _base(sale))
