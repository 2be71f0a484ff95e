"""The order events sales emits, and the relay that publishes them.

Every change of an order's status writes its event into the sales outbox
(:data:`sales_service.models.OUTBOX`) in the same transaction as the change
(:mod:`shopkit.events.outbox`): an order recorded ``pending`` is
``shop.order.placed.v1``; a drive that settles it writes ``completed``,
``failed`` or ``cancelled``; an admin's transition writes ``shipped`` or
``delivered``. A batch of purchases writes its events with one
:func:`~shopkit.events.outbox.emit_many`, in its batched transaction.

:class:`SalesRelay` runs the outbox's relay in a daemon thread of each worker;
the relay's lease makes one of them publish at a time (docs/events.rst).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from sales_service.models import CANCELLED, COMPLETED, FAILED, OUTBOX, Sale
from shopkit.db import Database
from shopkit.events.outbox import NewEvent, emit, emit_many
from shopkit.events.relay import Relay, broker_client

log = logging.getLogger(__name__)

PLACED = "shop.order.placed.v1"
SHIPPED = "shop.order.shipped.v1"
DELIVERED = "shop.order.delivered.v1"
#: The event of each status a drive settles an order in.
SETTLED = {
    COMPLETED: "shop.order.completed.v1",
    FAILED: "shop.order.failed.v1",
    CANCELLED: "shop.order.cancelled.v1",
}
#: How long the relay thread gets to finish its round when the process exits.
STOP_TIMEOUT_S = 5.0


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


class SalesRelay:
    """The sales outbox's relay in a daemon thread, stopped when the process exits.

    It has a pool of its own (the lease's connection and one to work with), so it
    never takes a connection from the requests'.
    """

    def __init__(self, database_url: str, events_url: str) -> None:
        self.database = Database(database_url, application_name="sales-relay", pool_size=1)
        self.relay = Relay(self.database.engine, OUTBOX, broker_client(events_url), service="sales")
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None

    @property
    def started(self) -> bool:
        """Whether the thread was started."""
        return self._thread is not None

    def start(self) -> None:
        """Start publishing (the lease decides whether this worker's relay publishes)."""
        self._thread, self._stop = self.relay.start_thread()
        atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the thread (it gives the lease back) and wait for it, boundedly."""
        if self._thread is None or self._stop is None:
            return
        self._stop.set()
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("the sales relay did not stop within %.0fs", STOP_TIMEOUT_S)
        self.relay.broker.close()
        self.database.dispose()
        self._thread = None


def recorded_only(sales: Sequence[Sale | None]) -> list[Sale]:
    """The sales a batch actually recorded (``None`` marks a reused idempotency key)."""
    return [sale for sale in sales if sale is not None]
