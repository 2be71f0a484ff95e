"""Request and response schemas of the inventory service (the source of its OpenAPI document)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from inventory_service.models import (
    CATEGORIES,
    DESCRIPTION_MAX,
    MAX_STOCK,
    NAME_MAX,
    RESERVATION_STATUSES,
)
from shopkit.fields import (
    MAX_ID,
    Money,
    PositiveMoney,
    StrictInteger,
    TrimmedString,
    format_money,
)
from shopkit.pagination import PageArgsSchema, page_schema

#: Largest quantity one stock change (restock, deduct, reservation) may move.
MAX_QUANTITY = 1_000_000
#: Largest stock a product may be created with.
MAX_INITIAL_STOCK = 1_000_000
MAX_BATCH = 1000
SORTS = ("newest", "price", "-price", "name", "-name")


class ProductName(TrimmedString):
    """A product name: 1 to 200 characters once trimmed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            validate=validate.Length(min=1, max=NAME_MAX),
            metadata={"example": "Espresso beans, 1 kg"},
            **kwargs,
        )


class Description(fields.String):
    """A product description: up to 5000 characters, trimmed; may be empty."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=validate.Length(max=DESCRIPTION_MAX), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return str(super()._deserialize(value, attr, data, **kwargs)).strip()


def _category(**kwargs: Any) -> fields.String:
    return fields.String(validate=validate.OneOf(CATEGORIES), **kwargs)


class ProductCreateSchema(Schema):
    """A new product. ``description`` is optional (default empty), ``stock`` defaults to 0."""

    name = ProductName(required=True)
    category = _category(required=True)
    price = PositiveMoney(required=True, metadata={"description": "Greater than 0.00."})
    description = Description(load_default="")
    stock = StrictInteger(
        load_default=0,
        validate=validate.Range(min=0, max=MAX_INITIAL_STOCK),
        metadata={"description": f"Initial stock, 0 to {MAX_INITIAL_STOCK}."},
    )


class ProductPatchSchema(Schema):
    """Fields an admin may change. Stock changes only through restock/deduct (no lost updates).

    ``archived: false`` restores an archived product.
    """

    name = ProductName()
    category = _category()
    price = PositiveMoney()
    description = Description()
    archived = fields.Boolean(metadata={"description": "false restores an archived product."})


class ProductSchema(Schema):
    """A product of the catalogue."""

    id = fields.Integer()
    name = fields.String()
    category = fields.String(metadata={"enum": list(CATEGORIES)})
    price = Money()
    description = fields.String()
    stock = fields.Integer()
    archived = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


ProductPageSchema = page_schema(ProductSchema, "ProductPage")


def dump_product(product: Any) -> dict[str, Any]:
    """Exactly ``ProductSchema().dump(product)``, without marshmallow's per-field overhead.

    Used by the two hot collection endpoints (listing and batch create); a test
    checks that both renderings are identical.
    """
    return {
        "id": product.id,
        "name": product.name,
        "category": product.category,
        "price": format_money(product.price),
        "description": product.description,
        "stock": product.stock,
        "archived": product.archived,
        "created_at": product.created_at.isoformat(),
        "updated_at": product.updated_at.isoformat(),
    }


class ProductSearchArgsSchema(PageArgsSchema):
    """Query of ``GET /products``."""

    category = _category()
    q = fields.String(
        validate=validate.Length(min=1, max=100),
        metadata={
            "description": "Words to find, case-insensitive: every word must begin a word "
            "of the name or description (full-text index)."
        },
    )
    min_price = Money(metadata={"description": "Lowest price, inclusive."})
    max_price = Money(metadata={"description": "Highest price, inclusive."})
    in_stock = fields.Boolean(
        metadata={"description": "true: only products with stock; false: only sold out."}
    )
    sort = fields.String(
        load_default="newest",
        validate=validate.OneOf(SORTS),
        metadata={
            "description": "newest (default, newest first), price / -price (ascending / "
            "descending), name / -name."
        },
    )

    @validates_schema
    def _price_range(self, data: dict[str, Any], **_kwargs: Any) -> None:
        low, high = data.get("min_price"), data.get("max_price")
        if low is not None and high is not None and low > high:
            raise ValidationError("min_price must not exceed max_price.", "min_price")


class BatchCreateSchema(Schema):
    """Bulk creation of up to 1000 products (all or none)."""

    products = fields.List(
        fields.Nested(ProductCreateSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_BATCH),
    )


class BatchResultSchema(Schema):
    """Result of a bulk creation, items in the order given."""

    created = fields.Integer()
    items = fields.List(fields.Nested(ProductSchema))


class QuantitySchema(Schema):
    """A stock change by an admin."""

    quantity = StrictInteger(
        required=True,
        validate=validate.Range(min=1, max=MAX_QUANTITY),
        metadata={"description": f"1 to {MAX_QUANTITY}; stock never exceeds {MAX_STOCK}."},
    )


class ReservationRequestSchema(Schema):
    """Stock to take for one sale."""

    sale_id = fields.UUID(required=True)
    product_id = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_ID))
    quantity = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_QUANTITY))


class ReservationSchema(Schema):
    """Stock taken for a sale, with the price and name at the time of the reservation."""

    sale_id = fields.UUID()
    product_id = fields.Integer()
    quantity = fields.Integer()
    unit_price = Money()
    name = fields.String()
    status = fields.String(metadata={"enum": list(RESERVATION_STATUSES)})
    created_at = fields.DateTime()
    released_at = fields.DateTime(allow_none=True)


ReservationPageSchema = page_schema(ReservationSchema, "ReservationPage")


class ReservationListArgsSchema(PageArgsSchema):
    """Query of ``GET /internal/reservations``."""

    status = fields.String(validate=validate.OneOf(RESERVATION_STATUSES))
    product_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
