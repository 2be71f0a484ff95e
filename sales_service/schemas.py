"""Request and response schemas of the sales service (the source of its OpenAPI document)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from sales_service.models import STATUSES
from shopkit.fields import MAX_ID, Money, StrictInteger
from shopkit.pagination import PageArgsSchema, page_schema

MAX_QUANTITY = 1000
CATEGORIES = ("food", "clothes", "accessories", "electronics")


class PurchaseSchema(Schema):
    """A purchase request."""

    product_id = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_ID))
    quantity = StrictInteger(
        required=True,
        validate=validate.Range(min=1, max=MAX_QUANTITY),
        metadata={"description": f"Units to buy, 1 to {MAX_QUANTITY}."},
    )


class SaleSchema(Schema):
    """A sale as its buyer sees it."""

    id = fields.UUID()
    status = fields.String(metadata={"enum": list(STATUSES)})
    failure_code = fields.String(allow_none=True)
    product_id = fields.Integer()
    product_name = fields.String(allow_none=True)
    quantity = fields.Integer()
    unit_price = Money(allow_none=True)
    total = Money(allow_none=True)
    customer_id = fields.Integer()
    username = fields.String()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    completed_at = fields.DateTime(allow_none=True)


class SagaStepSchema(Schema):
    """One step of a sale's saga."""

    step = fields.String()
    outcome = fields.String()
    detail = fields.Dict()
    created_at = fields.DateTime()


class SaleDetailSchema(SaleSchema):
    """A sale with the log of its saga steps."""

    steps = fields.List(fields.Nested(SagaStepSchema))


SalePageSchema = page_schema(SaleSchema, "SalePage")


class HistoryArgsSchema(PageArgsSchema):
    """Query of a customer's purchase history."""

    status = fields.String(validate=validate.OneOf(STATUSES))


class SalesQuerySchema(PageArgsSchema):
    """Query of ``GET /sales`` (admin)."""

    status = fields.String(validate=validate.OneOf(STATUSES))
    customer = fields.String(
        validate=validate.Length(min=1, max=32), metadata={"description": "Buyer's username."}
    )
    product = fields.Integer(
        validate=validate.Range(min=1, max=MAX_ID), metadata={"description": "Product id."}
    )


class PurchasesQuerySchema(Schema):
    """Query of ``GET /internal/purchases``."""

    customer_id = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_ID))
    product_id = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_ID))


class PurchasesSchema(Schema):
    """Whether a customer bought a product (completed sales only)."""

    customer_id = fields.Integer()
    product_id = fields.Integer()
    purchased = fields.Boolean()
    completed_sales = fields.Integer()
    last_purchased_at = fields.DateTime(allow_none=True)


class CatalogArgsSchema(PageArgsSchema):
    """Query of ``GET /catalog``."""

    q = fields.String(validate=validate.Length(min=1, max=100))
    category = fields.String(validate=validate.OneOf(CATEGORIES))


class CatalogItemSchema(Schema):
    """A product available for sale."""

    id = fields.Integer()
    name = fields.String()
    price = fields.String(metadata={"example": "19.99"})


CatalogPageSchema = page_schema(CatalogItemSchema, "CatalogPage")


class CatalogDetailSchema(CatalogItemSchema):
    """A product's details."""

    category = fields.String()
    description = fields.String()
    stock = fields.Integer()
    in_stock = fields.Boolean()
