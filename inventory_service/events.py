"""The product events inventory emits, in the transaction of the change they tell.

Every stock change (a reservation, its release or return, an admin's restock
or deduct, a new product's initial stock) writes ``shop.product.stock_changed.v1``
with the stock it left and the change; a new product writes
``shop.product.created.v1``, an archived one ``shop.product.archived.v1``, one put
back on sale ``shop.product.restored.v1``. They
go into the inventory outbox (:data:`inventory_service.models.OUTBOX`,
:mod:`shopkit.events.outbox`) and the relay in each worker publishes them
(:mod:`shopkit.events.service_relay`).

Every emitter of a product's events holds that product's row lock first (the
``UPDATE`` that moves its stock, the ``SELECT ... FOR UPDATE`` of an archive,
the ``INSERT`` of a new product), so the events are written with
``serialized=True``: one ``INSERT`` per transaction and no advisory lock. A
batch of reservations writes the events of all its sales with one call
(:class:`inventory_service.reservations.BatchEvents`).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy.orm import Session

from inventory_service.models import OUTBOX
from shopkit.events.outbox import NewEvent, emit_many
from shopkit.fields import format_money

STOCK_CHANGED = "shop.product.stock_changed.v1"
CREATED = "shop.product.created.v1"
ARCHIVED = "shop.product.archived.v1"
RESTORED = "shop.product.restored.v1"


def stock_changed(product_id: int, stock: int, delta: int) -> NewEvent:
    """Product ``product_id``'s stock moved by ``delta`` and is now ``stock``."""
    return NewEvent(
        STOCK_CHANGED, product_id, {"product_id": product_id, "stock": stock, "delta": delta}
    )


def created(product_id: int, name: str, price: Decimal, stock: int) -> list[NewEvent]:
    """A new product's events: ``created``, then its initial stock if it has any."""
    events = [
        NewEvent(
            CREATED,
            product_id,
            {"product_id": product_id, "name": name, "price": format_money(price)},
        )
    ]
    if stock:
        events.append(stock_changed(product_id, stock, stock))
    return events


def archived(product_id: int) -> NewEvent:
    """Product ``product_id`` was withdrawn from sale."""
    return NewEvent(ARCHIVED, product_id, {"product_id": product_id})


def restored(product_id: int) -> NewEvent:
    """Product ``product_id``, archived, was put back on sale."""
    return NewEvent(RESTORED, product_id, {"product_id": product_id})


def emit(session: Session, events: Sequence[NewEvent]) -> None:
    """Write ``events`` into the outbox in the session's transaction (one statement).

    The caller holds the row lock of every product named (see the module's docstring).
    """
    emit_many(session, OUTBOX, events, serialized=True)
