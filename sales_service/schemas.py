"""Request and response schemas of the sales service (the source of its OpenAPI document)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from sales_service.models import MAX_CART_QUANTITY, MAX_LINES, STATUSES
from shopkit.catalog_query import ProductQuerySchema
from shopkit.fields import MAX_ID, SALE_TOTAL_DIGITS, Money, StrictInteger, TrimmedString
from shopkit.pagination import PageArgsSchema, page_schema

MAX_QUANTITY = 1000
CATEGORIES = ("food", "clothes", "accessories", "electronics")


def _product_id(**kwargs: Any) -> StrictInteger:
    return StrictInteger(validate=validate.Range(min=1, max=MAX_ID), **kwargs)


def _quantity(**kwargs: Any) -> StrictInteger:
    return StrictInteger(
        validate=validate.Range(min=1, max=MAX_QUANTITY),
        metadata={"description": f"Units to buy, 1 to {MAX_QUANTITY}."},
        **kwargs,
    )


class OrderLineRequestSchema(Schema):
    """One line of an order: a product and how many."""

    product_id = _product_id(required=True)
    quantity = _quantity(required=True)


class PurchaseSchema(Schema):
    """An order: either one product (``product_id``, ``quantity``) or ``items``.

    ``items`` holds 1 to 50 lines of distinct products; the order is placed
    all or nothing. Loads as ``{"lines": ((product_id, quantity), ...)}``.
    """

    product_id = _product_id()
    quantity = _quantity()
    items = fields.List(
        fields.Nested(OrderLineRequestSchema),
        validate=validate.Length(min=1, max=MAX_LINES),
        metadata={"description": f"1 to {MAX_LINES} lines, each product at most once."},
    )

    @validates_schema
    def _one_form(self, data: dict[str, Any], **kwargs: Any) -> None:
        single = "product_id" in data or "quantity" in data
        if single and "items" in data:
            raise ValidationError("Give either items or product_id and quantity, not both.")
        if "items" in data:
            seen: set[int] = set()
            for line in data["items"]:
                if line["product_id"] in seen:
                    raise ValidationError(
                        f"Product {line['product_id']} appears twice; give each product once.",
                        "items",
                    )
                seen.add(line["product_id"])
            return
        missing = {
            name: ["Missing data for required field."]
            for name in ("product_id", "quantity")
            if name not in data
        }
        if missing:
            raise ValidationError(missing)

    @post_load
    def _to_lines(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if "items" in data:
            lines = tuple((line["product_id"], line["quantity"]) for line in data["items"])
        else:
            lines = ((data["product_id"], data["quantity"]),)
        return {"lines": lines}


class SaleLineSchema(Schema):
    """One line of an order, with the unit price inventory reserved for it."""

    product_id = fields.Integer()
    product_name = fields.String(allow_none=True)
    quantity = fields.Integer()
    unit_price = Money(allow_none=True)
    line_total = Money(allow_none=True, digits=SALE_TOTAL_DIGITS)


class HistoryEntrySchema(Schema):
    """A status the order took, and when."""

    status = fields.String(metadata={"enum": list(STATUSES)})
    at = fields.String(metadata={"format": "date-time"})


class SaleSchema(Schema):
    """An order as its buyer sees it.

    ``product_id``, ``product_name``, ``quantity`` and ``unit_price`` repeat
    the line of a one-line order and are null for an order of several lines.
    """

    id = fields.UUID()
    status = fields.String(metadata={"enum": list(STATUSES)})
    failure_code = fields.String(allow_none=True)
    items = fields.List(fields.Nested(SaleLineSchema), attribute="lines")
    total = Money(allow_none=True, digits=SALE_TOTAL_DIGITS)
    history = fields.List(fields.Nested(HistoryEntrySchema))
    carrier = fields.String(allow_none=True)
    tracking_number = fields.String(allow_none=True)
    product_id = fields.Integer(allow_none=True)
    product_name = fields.String(allow_none=True)
    quantity = fields.Integer(allow_none=True)
    unit_price = Money(allow_none=True)
    customer_id = fields.Integer()
    username = fields.String()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    completed_at = fields.DateTime(allow_none=True)
    shipped_at = fields.DateTime(allow_none=True)
    delivered_at = fields.DateTime(allow_none=True)
    cancelled_at = fields.DateTime(allow_none=True)


class ShipmentSchema(Schema):
    """A shipment: who carries the order and its tracking number (both optional)."""

    carrier = TrimmedString(validate=validate.Length(min=1, max=100), load_default=None)
    tracking_number = TrimmedString(validate=validate.Length(min=1, max=100), load_default=None)


class CartQuantitySchema(Schema):
    """How many units of a product the cart should hold."""

    quantity = StrictInteger(
        required=True,
        validate=validate.Range(min=1, max=MAX_CART_QUANTITY),
        metadata={"description": f"1 to {MAX_CART_QUANTITY}."},
    )


class CartLineSchema(Schema):
    """A line of the cart, priced from inventory now."""

    product_id = fields.Integer()
    product_name = fields.String(allow_none=True)
    quantity = fields.Integer()
    unit_price = Money(allow_none=True, metadata={"description": "Current price; null if gone."})
    line_total = Money(allow_none=True, digits=SALE_TOTAL_DIGITS)
    available = fields.Boolean(
        metadata={"description": "Listed and enough stock for this quantity right now."}
    )


class CartSchema(Schema):
    """The caller's cart."""

    items = fields.List(fields.Nested(CartLineSchema))
    total = Money(digits=SALE_TOTAL_DIGITS, metadata={"description": "Sum of the priced lines."})


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
    """Query of a customer's purchase history: by status, and orders holding one product."""

    status = fields.String(validate=validate.OneOf(STATUSES))
    product = fields.Integer(
        validate=validate.Range(min=1, max=MAX_ID), metadata={"description": "Product id."}
    )


class SalesQuerySchema(HistoryArgsSchema):
    """Query of ``GET /sales`` (admin)."""

    customer = fields.String(
        validate=validate.Length(min=1, max=32), metadata={"description": "Buyer's username."}
    )


class PurchasesQuerySchema(Schema):
    """Query of ``GET /sales/purchases``."""

    customer_id = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_ID))
    product_id = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_ID))


class PurchasesSchema(Schema):
    """Whether a customer bought a product (paid orders only: completed, shipped, delivered)."""

    customer_id = fields.Integer()
    product_id = fields.Integer()
    purchased = fields.Boolean()
    completed_sales = fields.Integer()
    last_purchased_at = fields.DateTime(allow_none=True)


class CatalogArgsSchema(ProductQuerySchema):
    """Query of ``GET /catalog``: the same product query as inventory's ``GET /products``."""


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
