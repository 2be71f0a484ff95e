"""The review events reviews emits, each in the transaction of the change it tells.

Every change of a review writes its event into the reviews outbox
(:data:`reviews_service.models.OUTBOX`, :mod:`shopkit.events.outbox`), so a
consumer (inventory's ratings) can tell at each moment whether the review is
public and with which rating:

- ``shop.review.submitted.v1``: a new review, or an edit that changed it; either
  way it waits for moderation (hidden);
- ``approved`` (public), ``rejected`` or ``flagged`` (hidden): a moderator's decision;
- ``deleted``: the review is gone.

Each carries the review's id, product, customer and rating (the rating at that
moment); the aggregate is the review, so its events keep their order
(``sequence``). The relay publishing them runs in each worker
(:mod:`shopkit.events.service_relay`, docs/events.rst).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from reviews_service.models import OUTBOX, Review
from shopkit.events.outbox import emit

SUBMITTED = "shop.review.submitted.v1"
DELETED = "shop.review.deleted.v1"
#: The event of each moderation action.
DECIDED = {
    "approve": "shop.review.approved.v1",
    "reject": "shop.review.rejected.v1",
    "flag": "shop.review.flagged.v1",
}


def emit_review_event(session: Session, type_name: str, review: Review) -> None:
    """Write ``type_name`` about ``review`` (flushed, so it has its id) in the transaction."""
    data = {
        "review_id": review.id,
        "product_id": review.product_id,
        "customer_id": review.customer_id,
        "rating": review.rating,
    }
    emit(session, OUTBOX, type_name, review.id, data)
