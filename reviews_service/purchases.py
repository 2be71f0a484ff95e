"""Verified purchases, learned from order events: no call to sales when a review is written.

The ``reviews`` consumer group reads the order stream and applies each batch with
:func:`apply_order_events`, inside the consumer's transaction (which also records
the events in the inbox, so a redelivered event changes nothing):

- ``shop.order.placed.v1`` records the order (``placed``) and its products
  (``purchase_lines``): the other order events carry no lines;
- ``completed``, ``shipped`` and ``delivered`` make it ``paid``; ``failed`` and
  ``cancelled`` (refunded) make it ``failed`` / ``cancelled``.

Each order keeps the status of its latest event by ``sequence``: an older event
applied late (around a retry, or replayed from the dead letters) never
overwrites a newer one, and a ``completed`` applied before its ``placed`` still
ends ``paid`` with its lines. A group that starts late reads the stream from its
beginning and arrives at the same rows.

A customer is a **verified buyer** of a product when a line of one of their
``paid`` orders holds it (:func:`purchase_state`); the admin listing
(:func:`verified_purchases`) is what the audit compares with sales' paid orders.
How stale this can be is in docs/events.rst ("Reviews").
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.orm import Session

from reviews_service.models import PURCHASE_PAID, PURCHASE_PLACED, Purchase, PurchaseLine
from shopkit.events.catalog import stream_for
from shopkit.events.envelope import Event
from shopkit.events.ordering import newest_by, sequence_of
from shopkit.pagination import paginate

#: The consumer group, and the streams it reads.
GROUP = "reviews"
STREAMS = (stream_for("order"),)

PLACED = "shop.order.placed.v1"
#: The status each order event leaves its order in; other types change nothing.
STATUS_AFTER = {
    PLACED: PURCHASE_PLACED,
    "shop.order.completed.v1": PURCHASE_PAID,
    "shop.order.shipped.v1": PURCHASE_PAID,
    "shop.order.delivered.v1": PURCHASE_PAID,
    "shop.order.failed.v1": "failed",
    "shop.order.cancelled.v1": "cancelled",
}

_purchases = Purchase.__table__
_lines = PurchaseLine.__table__


def _upsert_purchases() -> Insert:
    """Each order's row, its status moved on only by a newer event (``sequence``)."""
    upsert = insert(_purchases)
    return upsert.on_conflict_do_update(
        index_elements=[_purchases.c.order_id],
        set_={
            "status": upsert.excluded.status,
            "sequence": upsert.excluded.sequence,
            "updated_at": func.now(),
        },
        where=_purchases.c.sequence < upsert.excluded.sequence,
    )


#: The handler's statements: Core on the tables (the ORM's bulk path, ``insert(Purchase)``,
#: cost more than the statements themselves at the few rows a live batch has), built once.
_UPSERT_PURCHASES = _upsert_purchases()
_INSERT_LINES = insert(_lines).on_conflict_do_nothing()

#: What a review's writer is, as far as the order events told: a buyer (a paid order of
#: the product), a buyer whose order is not settled yet, or unknown.
VERIFIED = "verified"
PENDING = "pending"


def apply_order_events(session: Session, events: list[Event]) -> None:
    """The batch handler: each order's latest status, and the lines of placed orders.

    Two statements whatever the batch's size; rows go in key order, so two
    consumers applying batches that share orders lock them in the same order. An
    event without a ``sequence`` cannot be ordered against the others: it fails
    (:class:`~shopkit.events.ordering.UnorderedEvent`, a ``ValueError``), and is
    retried, then dead-lettered, on its own.
    """
    relevant = [event for event in events if event.type in STATUS_AFTER]
    newest = newest_by(relevant, lambda event: uuid.UUID(str(event.data["order_id"])))
    orders = {
        order_id: {
            "order_id": order_id,
            "customer_id": int(event.data["customer_id"]),
            "status": STATUS_AFTER[event.type],
            "sequence": sequence_of(event),
        }
        for order_id, event in newest.items()
    }
    lines: dict[tuple[int, int, uuid.UUID], dict[str, Any]] = {}
    for event in relevant:
        if event.type == PLACED:
            order_id = uuid.UUID(str(event.data["order_id"]))
            customer_id = int(event.data["customer_id"])
            for line in event.data["lines"]:
                product_id = int(line["product_id"])
                lines[(customer_id, product_id, order_id)] = {
                    "customer_id": customer_id,
                    "product_id": product_id,
                    "order_id": order_id,
                }
    if orders:
        session.execute(_UPSERT_PURCHASES, [orders[key] for key in sorted(orders)])
    if lines:
        session.execute(_INSERT_LINES, [lines[key] for key in sorted(lines)])


def purchase_state(session: Session, customer_id: int, product_id: int) -> str | None:
    """:data:`VERIFIED` if a paid order of ``customer_id`` holds ``product_id``,
    :data:`PENDING` if only an unsettled one does, else ``None``."""
    statuses = set(
        session.execute(
            select(Purchase.status)
            .join(PurchaseLine, PurchaseLine.order_id == Purchase.order_id)
            .where(PurchaseLine.customer_id == customer_id, PurchaseLine.product_id == product_id)
        ).scalars()
    )
    if PURCHASE_PAID in statuses:
        return VERIFIED
    if PURCHASE_PLACED in statuses:
        return PENDING
    return None


def verified_purchases(
    session: Session,
    page: int,
    page_size: int,
    *,
    customer_id: int | None = None,
    product_id: int | None = None,
) -> dict[str, Any]:
    """A page of verified purchases ``(customer, product, order)``, in that order."""
    statement = (
        select(PurchaseLine)
        .join(Purchase, Purchase.order_id == PurchaseLine.order_id)
        .where(Purchase.status == PURCHASE_PAID)
        .order_by(PurchaseLine.customer_id, PurchaseLine.product_id, PurchaseLine.order_id)
    )
    if customer_id is not None:
        statement = statement.where(PurchaseLine.customer_id == customer_id)
    if product_id is not None:
        statement = statement.where(PurchaseLine.product_id == product_id)
    return paginate(session, statement, page, page_size)
