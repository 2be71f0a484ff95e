"""HTTP routes of the reviews service: parse, call a business operation, respond."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint

from reviews_service import moderation, purchases, reviews
from reviews_service.clients import ReviewsClients
from reviews_service.models import ModerationEntry, Review
from reviews_service.schemas import (
    ModerationSchema,
    ProductReviewsSchema,
    PurchaseArgsSchema,
    PurchasePageSchema,
    QueueArgsSchema,
    ReviewCreateSchema,
    ReviewDetailSchema,
    ReviewPageSchema,
    ReviewPatchSchema,
    ReviewSchema,
)
from shopkit.auth import (
    BEARER_SECURITY,
    ROLE_ADMIN,
    ROLE_CUSTOMER,
    Principal,
    current_principal,
    require_principal,
    requires,
)
from shopkit.db import get_session
from shopkit.errors import Forbidden
from shopkit.openapi import LOCATION_HEADER
from shopkit.pagination import PageArgsSchema

reviews_blp = Blueprint(
    "reviews", __name__, description="Verified-buyer reviews, their listings and summaries."
)
moderation_blp = Blueprint("moderation", __name__, description="Moderation of reviews (admins).")
admin_blp = Blueprint(
    "admin", __name__, description="What reviews learned from events, for the audit (admins)."
)

#: Operations that accept a token but also answer anonymous callers.
OPTIONAL_BEARER = [{}, *BEARER_SECURITY]

_REVIEW_FIELDS = tuple(ReviewSchema().fields)


def _clients() -> ReviewsClients:
    return current_app.extensions["reviews_clients"]  # type: ignore[no-any-return]


def _detail(review: Review, principal: Principal | None) -> dict[str, Any] | Review:
    """The review, with its moderation log when an admin asks."""
    if principal is None or not principal.is_admin:
        return review
    log: list[ModerationEntry] = moderation.log_of(get_session(), review.id)
    return {**{name: getattr(review, name) for name in _REVIEW_FIELDS}, "moderation": log}


# --- reviews ----------------------------------------------------------------------------------


@reviews_blp.route("/reviews", methods=["POST"])
@reviews_blp.response(201, ReviewSchema, headers=LOCATION_HEADER)
@reviews_blp.alt_response(403, description="Not a customer, or not a buyer (`not_a_buyer`).")
@reviews_blp.alt_response(404, description="No such product (`product_ids` names it).")
@reviews_blp.alt_response(
    409,
    description="Already reviewed (`already_reviewed`), or the order of the product is not "
    "settled yet (`purchase_pending`, with `Retry-After`).",
)
@reviews_blp.alt_response(503, description="Inventory unavailable: nothing was written.")
@requires(ROLE_CUSTOMER)
@reviews_blp.arguments(ReviewCreateSchema())
def create_review(data: dict[str, Any]) -> tuple[Review, int, dict[str, str]]:
    """Review a product you bought; it stays ``pending`` (hidden) until a moderator approves it.

    An unknown product is 404 `not_found` naming it in `product_ids`. Purchases are
    learned from order events: one paid a moment ago may take a second to be known.
    """
    review = reviews.submit(get_session(), _clients().catalog, require_principal(), data)
    return review, 201, {"Location": f"/reviews/{review.id}"}


@reviews_blp.route("/reviews", methods=["GET"])
@reviews_blp.response(200, ReviewPageSchema)
@requires(ROLE_ADMIN)
@reviews_blp.arguments(QueueArgsSchema(), location="query")
def list_reviews(args: dict[str, Any]) -> ResponseReturnValue:
    """The moderation queue (admin): reviews in one status, longest waiting first."""
    return moderation.queue(get_session(), args["status"], args["page"], args["page_size"])


@reviews_blp.route("/reviews/<int:review_id>", methods=["GET"])
@reviews_blp.response(200, ReviewDetailSchema)
@reviews_blp.doc(security=OPTIONAL_BEARER)
def get_review(review_id: int) -> dict[str, Any] | Review:
    """One review: anyone if approved, else only its author and admins (others get 404).

    Admins also get the moderation log.
    """
    principal = current_principal()
    return _detail(reviews.visible_review(get_session(), review_id, principal), principal)


@reviews_blp.route("/reviews/<int:review_id>", methods=["PATCH"])
@reviews_blp.response(200, ReviewSchema)
@requires(ROLE_CUSTOMER, ROLE_ADMIN)
@reviews_blp.arguments(ReviewPatchSchema())
def patch_review(changes: dict[str, Any], review_id: int) -> Review:
    """Edit your review (author only); a change sends it back to ``pending``."""
    principal = require_principal()
    session = get_session()
    review = reviews.visible_review(session, review_id, principal, for_update=True)
    if not reviews.is_author(review, principal):
        raise Forbidden("Only the author may edit a review.")
    reviews.edit(session, review, changes)
    return review


@reviews_blp.route("/reviews/<int:review_id>", methods=["DELETE"])
@reviews_blp.response(204)
@requires(ROLE_CUSTOMER, ROLE_ADMIN)
def delete_review(review_id: int) -> ResponseReturnValue:
    """Delete a review for good (its author or an admin)."""
    principal = require_principal()
    session = get_session()
    review = reviews.visible_review(session, review_id, principal, for_update=True)
    if not (principal.is_admin or reviews.is_author(review, principal)):
        raise Forbidden("Only the author or an admin may delete a review.")
    reviews.delete(session, review)
    return "", 204


@reviews_blp.route("/products/<int:product_id>/reviews", methods=["GET"])
@reviews_blp.response(200, ProductReviewsSchema)
@reviews_blp.arguments(PageArgsSchema(), location="query")
def product_reviews(args: dict[str, int], product_id: int) -> ResponseReturnValue:
    """A product's approved reviews, newest first, with count, average and histogram.

    An unknown product simply has no reviews.
    """
    return reviews.product_reviews(get_session(), product_id, args["page"], args["page_size"])


@reviews_blp.route("/customers/<string:username>/reviews", methods=["GET"])
@reviews_blp.response(200, ReviewPageSchema)
@reviews_blp.doc(security=OPTIONAL_BEARER)
@reviews_blp.arguments(PageArgsSchema(), location="query")
def customer_reviews(args: dict[str, int], username: str) -> ResponseReturnValue:
    """A customer's reviews, newest first: all statuses for themself and admins,
    approved ones for everyone else."""
    return reviews.customer_reviews(
        get_session(), username, current_principal(), args["page"], args["page_size"]
    )


# --- moderation -------------------------------------------------------------------------------


@moderation_blp.route("/reviews/<int:review_id>/moderation", methods=["POST"])
@moderation_blp.response(200, ReviewDetailSchema)
@requires(ROLE_ADMIN)
@moderation_blp.arguments(ModerationSchema())
def moderate_review(decision: dict[str, Any], review_id: int) -> dict[str, Any] | Review:
    """Approve, flag or reject a review (admin); the decision is logged with its note."""
    principal = require_principal()
    session = get_session()
    review = reviews.get_review(session, review_id, for_update=True)
    moderation.moderate(
        session, review, principal.subject, decision["action"], decision.get("note")
    )
    return _detail(review, principal)


# --- admin ------------------------------------------------------------------------------------


@admin_blp.route("/admin/verified-purchases", methods=["GET"])
@admin_blp.response(200, PurchasePageSchema)
@requires(ROLE_ADMIN)
@admin_blp.arguments(PurchaseArgsSchema(), location="query")
def verified_purchases(args: dict[str, Any]) -> ResponseReturnValue:
    """The verified purchases reviews learned from order events (admin): each product of
    each paid order, by customer, product and order.

    They let a customer review the product; the audit compares them with sales' paid orders.
    """
    return purchases.verified_purchases(
        get_session(),
        args["page"],
        args["page_size"],
        customer_id=args.get("customer_id"),
        product_id=args.get("product_id"),
    )


__all__ = ["admin_blp", "moderation_blp", "reviews_blp"]
