"""Request and response schemas of the notifications service (the source of its OpenAPI)."""

from __future__ import annotations

from marshmallow import Schema, fields

from shopkit.pagination import PageArgsSchema, PageMetaSchema, page_schema


class NotificationSchema(Schema):
    """One notification."""

    id = fields.Integer(required=True)
    type = fields.String(
        required=True,
        metadata={"description": "The event type it came from (shop.order.shipped.v1)."},
    )
    subject = fields.String(required=True, metadata={"description": "The order's id."})
    title = fields.String(required=True)
    body = fields.String(required=True)
    occurred_at = fields.DateTime(required=True)
    read_at = fields.DateTime(allow_none=True, required=True)


class NotificationListArgsSchema(PageArgsSchema):
    """Query arguments of the list: paging, and unread ones only."""

    unread = fields.Boolean(load_default=False, metadata={"description": "Only unread ones."})


class NotificationPageSchema(page_schema(NotificationSchema, "NotificationPage")):  # type: ignore[misc]
    """A page of notifications, with how many are unread in all."""

    unread = fields.Integer(required=True, metadata={"description": "Unread, across all pages."})


class MarkedSchema(Schema):
    """How many notifications were marked read."""

    marked = fields.Integer(required=True)


__all__ = [
    "MarkedSchema",
    "NotificationListArgsSchema",
    "NotificationPageSchema",
    "NotificationSchema",
    "PageMetaSchema",
]
