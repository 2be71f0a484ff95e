"""Request and response schemas of the reviews service (the source of its OpenAPI document)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from reviews_service.models import (
    ACTIONS,
    MAX_COMMENT_LENGTH,
    MAX_NOTE_LENGTH,
    MAX_RATING,
    MIN_RATING,
    STATUS_PENDING,
    STATUSES,
)
from shopkit.fields import MAX_ID, StrictInteger, TrimmedString
from shopkit.pagination import PageArgsSchema, PageMetaSchema, page_schema

RATING = validate.Range(min=MIN_RATING, max=MAX_RATING)


def _comment(**kwargs: Any) -> TrimmedString:
    return TrimmedString(
        validate=validate.Length(max=MAX_COMMENT_LENGTH),
        metadata={
            "description": f"1 to {MAX_COMMENT_LENGTH} characters (surrounding blanks removed)."
        },
        **kwargs,
    )


class ReviewCreateSchema(Schema):
    """A new review of a product the caller bought."""

    product_id = StrictInteger(
        required=True, validate=validate.Range(min=1, max=MAX_ID), metadata={"example": 42}
    )
    rating = StrictInteger(required=True, validate=RATING, metadata={"example": 5})
    comment = _comment(required=True)


class ReviewPatchSchema(Schema):
    """An edit by the author: rating and/or comment (at least one)."""

    rating = StrictInteger(validate=RATING)
    comment = _comment()

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data:
            raise ValidationError("Change the rating, the comment or both.")


class ReviewSchema(Schema):
    """A review as the API shows it."""

    id = fields.Integer()
    product_id = fields.Integer()
    customer_id = fields.Integer()
    username = fields.String()
    rating = fields.Integer(metadata={"minimum": MIN_RATING, "maximum": MAX_RATING})
    comment = fields.String()
    status = fields.String(metadata={"enum": list(STATUSES)})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class ModerationEntrySchema(Schema):
    """One moderation decision."""

    id = fields.Integer()
    moderator = fields.String()
    action = fields.String(metadata={"enum": list(ACTIONS)})
    note = fields.String(allow_none=True)
    from_status = fields.String(metadata={"enum": list(STATUSES)})
    to_status = fields.String(metadata={"enum": list(STATUSES)})
    created_at = fields.DateTime()


class ReviewDetailSchema(ReviewSchema):
    """A review; admins also get its moderation log, oldest decision first."""

    moderation = fields.List(
        fields.Nested(ModerationEntrySchema),
        metadata={"description": "Only in answers to admins."},
    )


ReviewPageSchema = page_schema(ReviewSchema, "ReviewPage")


class ReviewSummarySchema(Schema):
    """Approved reviews of a product in numbers."""

    count = fields.Integer()
    average = fields.String(
        allow_none=True,
        metadata={
            "description": 'Mean rating with one decimal place (half up), e.g. "4.3"; '
            "null when there are no approved reviews.",
            "example": "4.3",
        },
    )
    histogram = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={
            "description": 'Reviews per rating, "1" to "5" (always all five keys).',
            "example": {"1": 0, "2": 1, "3": 0, "4": 2, "5": 4},
        },
    )


class ProductReviewsSchema(PageMetaSchema):
    """A page of a product's approved reviews (newest first) and their summary."""

    items = fields.List(fields.Nested(ReviewSchema))
    summary = fields.Nested(ReviewSummarySchema)


class QueueArgsSchema(PageArgsSchema):
    """Query of ``GET /reviews`` (the moderation queue)."""

    status = fields.String(
        load_default=STATUS_PENDING,
        validate=validate.OneOf(STATUSES),
        metadata={"description": "Reviews in this status (default: pending)."},
    )


class ModerationSchema(Schema):
    """A moderator's decision on a review."""

    action = fields.String(required=True, validate=validate.OneOf(tuple(ACTIONS)))
    note = TrimmedString(
        allow_none=True,
        validate=validate.Length(max=MAX_NOTE_LENGTH),
        metadata={"description": f"Optional reason, at most {MAX_NOTE_LENGTH} characters."},
    )


class PurchaseSchema(Schema):
    """One verified purchase: a product of a paid order of a customer."""

    customer_id = fields.Integer()
    product_id = fields.Integer()
    order_id = fields.UUID()


PurchasePageSchema = page_schema(PurchaseSchema, "VerifiedPurchasePage")


class PurchaseArgsSchema(PageArgsSchema):
    """Query of ``GET /admin/verified-purchases``: optionally one customer's or product's."""

    customer_id = fields.Integer(
        validate=validate.Range(min=1, max=MAX_ID), metadata={"description": "Customer id."}
    )
    product_id = fields.Integer(
        validate=validate.Range(min=1, max=MAX_ID), metadata={"description": "Product id."}
    )
