"""Review operations: submit, read, edit, delete, list and summarise.

Who sees what: an ``approved`` review is public; any other status is seen
only by its author and by admins. To everyone else a hidden review does not
exist (404), so its existence is never revealed.

Submitting checks, in this order and before anything is written: the caller
has not reviewed the product yet (409 ``already_reviewed``), the product
exists in inventory (404 ``not_found`` with ``product_ids``: the Shop's one
rule for a reference to something that does not exist, in the path or in the
body), and the caller bought it. Whether they did is read from reviews' own
verified purchases, learned from order events (:mod:`reviews_service.purchases`),
not asked of sales: a paid order of the product lets the review in; an order of
it that is placed but not settled yet is 409 ``purchase_pending`` (with
``Retry-After``: it is being paid, try again shortly); no known order is 403
``not_a_buyer``. A purchase paid a moment ago may not be known yet: the bound
on that delay is in docs/events.rst ("Reviews"). No transaction is held open
while inventory is asked; if it cannot answer, that is a 503 and nothing is
written. The unique ``(customer_id, product_id)`` constraint turns a concurrent
duplicate into 409 as well.

An edit that changes the rating or the comment sends the review back to
``pending`` (hidden until approved again); an edit that changes nothing
keeps its status. Deleting removes the review for good, together with its
moderation log (``ON DELETE CASCADE``): nothing of a deleted review is kept.

Every change writes its review event in the change's own transaction
(:mod:`reviews_service.events`): ``submitted`` for a new review and for an edit
that changes it, ``deleted`` when it goes.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reviews_service import events, purchases
from reviews_service.clients import Catalog
from reviews_service.models import (
    MAX_RATING,
    MIN_RATING,
    STATUS_APPROVED,
    STATUS_PENDING,
    Review,
)
from shopkit.auth import ROLE_CUSTOMER, Principal, is_self_or_admin
from shopkit.db import transaction
from shopkit.errors import Conflict, Forbidden, NotFound, ProblemError
from shopkit.fields import MAX_ID
from shopkit.pagination import paginate

ONE_PLACE = Decimal("0.1")


def is_author(review: Review, principal: Principal | None) -> bool:
    """True if ``principal`` is the customer who wrote ``review``."""
    return (
        principal is not None
        and principal.role == ROLE_CUSTOMER
        and principal.customer_id is not None
        and principal.customer_id == review.customer_id
    )


def can_see(review: Review, principal: Principal | None) -> bool:
    """Approved reviews are public; others only for their author and admins."""
    return (
        review.status == STATUS_APPROVED
        or is_author(review, principal)
        or (principal is not None and principal.is_admin)
    )


def get_review(session: Session, review_id: int, *, for_update: bool = False) -> Review:
    """The review ``review_id`` whatever its status, or 404."""
    review = None
    if 1 <= review_id <= MAX_ID:
        statement = select(Review).where(Review.id == review_id)
        if for_update:
            statement = statement.with_for_update()
        review = session.execute(statement).scalar_one_or_none()
    if review is None:
        raise NotFound(f"No review with id {review_id}.")
    return review


def visible_review(
    session: Session, review_id: int, principal: Principal | None, *, for_update: bool = False
) -> Review:
    """The review if ``principal`` may see it; 404 if it is missing or hidden from them."""
    review = get_review(session, review_id, for_update=for_update)
    if not can_see(review, principal):
        raise NotFound(f"No review with id {review_id}.")
    return review


def _already_reviewed() -> Conflict:
    return Conflict("already_reviewed", "You have already reviewed this product.")


#: Seconds after which a writer whose order is not settled yet may try again.
PURCHASE_PENDING_RETRY_S = 1


def submit(
    session: Session, catalog: Catalog, principal: Principal, data: dict[str, Any]
) -> Review:
    """Create a ``pending`` review by a verified buyer (see the module docstring for the checks)."""
    customer_id = principal.customer_id
    if principal.role != ROLE_CUSTOMER or customer_id is None:
        raise Forbidden("Only customers may review products.")
    product_id: int = data["product_id"]
    existing = session.execute(
        select(Review.id).where(Review.customer_id == customer_id, Review.product_id == product_id)
    ).first()
    bought = purchases.purchase_state(session, customer_id, product_id)
    session.rollback()  # end the read: no transaction stays open during the call below
    if existing is not None:
        raise _already_reviewed()
    if not catalog.product_exists(product_id):
        raise NotFound(f"No product with id {product_id}.", product_ids=[product_id])
    if bought == purchases.PENDING:
        raise ProblemError(
            409,
            "purchase_pending",
            "Your order of this product is not settled yet: try again in a moment.",
            headers={"Retry-After": str(PURCHASE_PENDING_RETRY_S)},
        )
    if bought is None:
        raise ProblemError(
            403,
            "not_a_buyer",
            "Only customers who bought this product may review it "
            "(a purchase paid a moment ago can take a second to be known).",
        )
    review = Review(
        product_id=product_id,
        customer_id=customer_id,
        username=principal.subject,
        rating=data["rating"],
        comment=data["comment"],
        status=STATUS_PENDING,
    )
    with transaction(session):
        session.add(review)
        try:
            session.flush()
        except IntegrityError:
            raise _already_reviewed() from None
        events.emit_review_event(session, events.SUBMITTED, review)
    return review


def edit(session: Session, review: Review, changes: dict[str, Any]) -> Review:
    """Change rating and/or comment; a real change sends the review back to ``pending``."""
    with transaction(session):
        changed = False
        for name in ("rating", "comment"):
            if name in changes and changes[name] != getattr(review, name):
                setattr(review, name, changes[name])
                changed = True
        if changed:
            review.status = STATUS_PENDING
            session.flush()
            events.emit_review_event(session, events.SUBMITTED, review)
        return review


def delete(session: Session, review: Review) -> None:
    """Remove the review and its moderation log."""
    with transaction(session):
        events.emit_review_event(session, events.DELETED, review)
        session.delete(review)
        session.flush()


def summary(session: Session, product_id: int) -> dict[str, Any]:
    """``{count, average, histogram}`` of a product's approved reviews.

    ``average`` is a decimal string rounded half up to one place (``"4.3"``),
    or ``None`` when there are none; ``histogram`` always has keys ``"1"`` to ``"5"``.
    """
    histogram = {str(rating): 0 for rating in range(MIN_RATING, MAX_RATING + 1)}
    if 1 <= product_id <= MAX_ID:
        rows = session.execute(
            select(Review.rating, func.count())
            .where(Review.product_id == product_id, Review.status == STATUS_APPROVED)
            .group_by(Review.rating)
        ).all()
        for rating, count in rows:
            histogram[str(rating)] = int(count)
    count = sum(histogram.values())
    average = None
    if count:
        total = sum(int(rating) * n for rating, n in histogram.items())
        average = str((Decimal(total) / Decimal(count)).quantize(ONE_PLACE, ROUND_HALF_UP))
    return {"count": count, "average": average, "histogram": histogram}


def product_reviews(session: Session, product_id: int, page: int, page_size: int) -> dict[str, Any]:
    """A page of the product's approved reviews, newest first, with the summary.

    The summary's count is the page's total, so no separate ``COUNT(*)`` is run.
    """
    overview = summary(session, product_id)
    items: list[Review] = []
    if overview["count"]:
        items = list(
            session.scalars(
                select(Review)
                .where(Review.product_id == product_id, Review.status == STATUS_APPROVED)
                .order_by(Review.created_at.desc(), Review.id.desc())
                .limit(page_size)
                .offset((page - 1) * page_size)
            )
        )
    return {
        "items": items,
        "page": page,
        "page_size": page_size,
        "total": overview["count"],
        "summary": overview,
    }


def customer_reviews(
    session: Session, username: str, principal: Principal | None, page: int, page_size: int
) -> dict[str, Any]:
    """A page of a customer's reviews, newest first: all of them for the author and admins,
    only approved ones for everyone else."""
    username = username.lower()
    statement = (
        select(Review)
        .where(Review.username == username)
        .order_by(Review.created_at.desc(), Review.id.desc())
    )
    if not is_self_or_admin(principal, username):
        statement = statement.where(Review.status == STATUS_APPROVED)
    return paginate(session, statement, page, page_size)
