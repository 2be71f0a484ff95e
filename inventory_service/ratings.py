"""Products' ratings, kept from the reviews service's events (event-carried state).

The consumer group ``inventory`` reads the review stream in each inventory
worker (:func:`shopkit.events.service_consumer.consumer_with_first_request`)
and applies each batch of new events with :func:`apply_review_events`, inside
the consumer's transaction, where the events' ids go into the inventory inbox
(:data:`inventory_service.models.INBOX`): a redelivered event is a no-op.

A product's rating is the count and the sum of the ratings of its *approved*
reviews. Reviews may move between states any number of times (a moderator
approves, later rejects, approves again; an edit sends a review back to
pending), so inventory keeps each review's last known state
(:class:`~inventory_service.models.ReviewRating`): ``approved`` counts the
review with the rating its event carries; ``submitted`` (new or edited, so
pending), ``rejected``, ``flagged`` and ``deleted`` do not. A state is
replaced only by an event with a higher ``sequence`` (the review's own event
counter), so an old event arriving after a newer one (a retry, a replayed
dead letter) changes nothing. The products touched by a batch then have
their count and sum recomputed from those states, so nothing can be counted
twice.

Per batch: the touched products are locked in ascending id order, by the
statement reservations lock them with
(:data:`inventory_service.reservations.LOCK_PRODUCTS`, so the two never
deadlock, and two workers of the group applying reviews of one product queue
instead of each missing the other's review), the review states are upserted
in one statement, and the products' ratings recomputed in one more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Integer,
    bindparam,
    column,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.orm import Session

from inventory_service.models import Product, ReviewRating
from inventory_service.reservations import LOCK_PRODUCTS
from shopkit.events.catalog import stream_for
from shopkit.events.envelope import Event
from shopkit.events.ordering import newest_by, sequence_of

#: The consumer group of inventory's ratings.
GROUP = "inventory"
#: The streams it reads.
STREAMS = (stream_for("review"),)
#: Whether a review whose latest event is of this type counts in its product's rating.
COUNTED = {
    "shop.review.submitted.v1": False,
    "shop.review.approved.v1": True,
    "shop.review.rejected.v1": False,
    "shop.review.flagged.v1": False,
    "shop.review.deleted.v1": False,
}

_products = Product.__table__
_reviews = ReviewRating.__table__


def latest_states(events: Sequence[Event]) -> dict[int, dict[str, Any]]:
    """Each review's state after the newest of its ``events`` (by ``sequence``; one without
    fails with :class:`~shopkit.events.ordering.UnorderedEvent`)."""
    counted = [event for event in events if event.type in COUNTED]  # the others: not used
    newest = newest_by(counted, lambda event: int(event.data["review_id"]))
    return {
        review_id: {
            "review_id": review_id,
            "product_id": int(event.data["product_id"]),
            "rating": int(event.data["rating"]),
            "counted": COUNTED[event.type],
            "sequence": sequence_of(event),
        }
        for review_id, event in newest.items()
    }


def _columns(name: str, type_: Any) -> Any:
    return bindparam(name, type_=ARRAY(type_))


def _upsert_statement() -> Any:
    """Each review's new state, unless the stored one comes from a newer event."""
    incoming = (
        func.unnest(
            _columns("review_ids", BigInteger),
            _columns("product_ids", BigInteger),
            _columns("ratings", Integer),
            _columns("counted", Boolean),
            _columns("sequences", BigInteger),
        )
        .table_valued(
            column("review_id", BigInteger),
            column("product_id", BigInteger),
            column("rating", Integer),
            column("counted", Boolean),
            column("sequence", BigInteger),
        )
        .render_derived(name="incoming")
    )
    statement = insert(_reviews).from_select(
        ["review_id", "product_id", "rating", "counted", "sequence"],
        select(
            incoming.c.review_id,
            incoming.c.product_id,
            incoming.c.rating,
            incoming.c.counted,
            incoming.c.sequence,
        ),
    )
    return statement.on_conflict_do_update(
        index_elements=[_reviews.c.review_id],
        set_={
            "product_id": statement.excluded.product_id,
            "rating": statement.excluded.rating,
            "counted": statement.excluded.counted,
            "sequence": statement.excluded.sequence,
            "updated_at": func.now(),
        },
        where=_reviews.c.sequence < statement.excluded.sequence,
    )


def _recompute_statement() -> Any:
    """The touched products' count and sum, from the states of their counted reviews."""
    touched = (
        func.unnest(_columns("product_ids", BigInteger))
        .table_valued(column("id", BigInteger))
        .render_derived(name="touched")
    )
    totals = (
        select(
            touched.c.id,
            func.count(_reviews.c.review_id).label("count"),
            func.coalesce(func.sum(_reviews.c.rating), 0).label("total"),
        )
        .select_from(
            touched.outerjoin(
                _reviews, (_reviews.c.product_id == touched.c.id) & _reviews.c.counted
            )
        )
        .group_by(touched.c.id)
        .subquery("totals")
    )
    return (
        update(_products)
        .where(
            _products.c.id == totals.c.id,
            (_products.c.rating_count != totals.c.count)
            | (_products.c.rating_sum != totals.c.total),
        )
        .values(rating_count=totals.c.count, rating_sum=totals.c.total)
    )


_UPSERT = _upsert_statement()
_RECOMPUTE = _recompute_statement()


def apply_review_events(session: Session, events: list[Event]) -> None:
    """The consumer's batch handler: apply review ``events`` to products' ratings.

    Runs in the consumer's transaction (which commits it with the events' inbox
    rows) and never commits. Three statements whatever the batch's size.
    """
    states = list(latest_states(events).values())
    if not states:
        return
    product_ids = sorted({state["product_id"] for state in states})
    connection = session.connection()
    connection.execute(LOCK_PRODUCTS, {"product_ids": product_ids})
    connection.execute(
        _UPSERT,
        {
            "review_ids": [state["review_id"] for state in states],
            "product_ids": [state["product_id"] for state in states],
            "ratings": [state["rating"] for state in states],
            "counted": [state["counted"] for state in states],
            "sequences": [state["sequence"] for state in states],
        },
    )
    connection.execute(_RECOMPUTE, {"product_ids": product_ids})
