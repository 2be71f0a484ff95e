"""Request and response schemas of the inventory service (the source of its OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from inventory_service.models import (
    CATEGORIES,
    DESCRIPTION_MAX,
    IMAGE_MEDIA_TYPES,
    MAX_STOCK,
    NAME_MAX,
    RESERVATION_STATUSES,
    rating_of,
)
from inventory_service.reservations import MAX_LINES
from shopkit.batch import BatchSchemaMixin, idempotency_key_field, items_field
from shopkit.catalog_query import ProductQuerySchema
from shopkit.fields import (
    MAX_ID,
    SALE_TOTAL_DIGITS,
    Money,
    PositiveMoney,
    StrictInteger,
    TrimmedString,
    format_money,
)
from shopkit.pagination import PageArgsSchema, page_schema

#: Largest quantity one stock change (restock, deduct, one-line reservation) may move.
MAX_QUANTITY = 1_000_000
#: Largest quantity of one line of a reservation given as ``items``.
MAX_LINE_QUANTITY = 1000
#: Most product ids one ``GET /products?ids=`` may name.
MAX_IDS = 100
#: Largest stock a product may be created with.
MAX_INITIAL_STOCK = 1_000_000
MAX_BATCH = 1000


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


class RatingSchema(Schema):
    """A product's rating: its approved reviews, from the reviews service's events."""

    average = fields.String(
        allow_none=True,
        metadata={
            "description": "Average of the approved reviews' ratings (1 to 5), rounded half "
            "up to two places; null while there is none.",
            "example": "4.50",
        },
    )
    count = fields.Integer(metadata={"description": "Approved reviews."})


class ProductSchema(Schema):
    """A product of the catalogue.

    ``rating`` is kept from review events, so it may lag a moderation by a
    moment (docs/events.rst, "Ratings").
    """

    id = fields.Integer()
    name = fields.String()
    category = fields.String(metadata={"enum": list(CATEGORIES)})
    price = Money()
    description = fields.String()
    stock = fields.Integer()
    archived = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    rating = fields.Nested(RatingSchema)


ProductPageSchema = page_schema(ProductSchema, "ProductPage")


class ProductImageSchema(Schema):
    """What an upload stored: the image's type (read from its bytes), size and ETag."""

    product_id = fields.Integer()
    media_type = fields.String(metadata={"enum": list(IMAGE_MEDIA_TYPES)})
    size = fields.Integer(metadata={"description": "Bytes."})
    etag = fields.String(metadata={"description": "The `ETag` `GET` answers with."})
    updated_at = fields.DateTime()


def dump_image(image: Any) -> dict[str, Any]:
    """A stored image as :class:`ProductImageSchema` describes it."""
    return {
        "product_id": image.product_id,
        "media_type": image.media_type,
        "size": image.size,
        "etag": f'"{image.sha256}"',
        "updated_at": image.updated_at.isoformat(),
    }


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
        "rating": rating_of(product.rating_sum, product.rating_count),
    }


class ProductIds(fields.String):
    """``1,2,3``: 1 to :data:`MAX_IDS` product ids, comma-separated; loads as a sorted id list."""

    # Loads a list, not the str of its base class: the string is only the wire format.
    def _deserialize(  # type: ignore[override]
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> list[int]:
        text = str(super()._deserialize(value, attr, data, **kwargs))
        parts = [part.strip() for part in text.split(",")]
        if len(parts) > MAX_IDS:
            raise ValidationError(f"At most {MAX_IDS} ids.")
        if not all(part.isascii() and part.isdigit() and len(part) <= 19 for part in parts):
            raise ValidationError("Give comma-separated product ids, e.g. 1,2,3.")
        ids = {int(part) for part in parts}
        if not all(1 <= product_id <= MAX_ID for product_id in ids):
            raise ValidationError(f"Product ids are 1 to {MAX_ID}.")
        return sorted(ids)


class ProductSearchArgsSchema(ProductQuerySchema):
    """Query of ``GET /products``: the shared product query, plus stock and ids."""

    in_stock = fields.Boolean(
        metadata={"description": "true: only products with stock; false: only sold out."}
    )
    ids = ProductIds(
        metadata={
            "description": f"Only these products: up to {MAX_IDS} comma-separated ids "
            "(unknown or archived ones are absent from the page).",
            "example": "1,2,3",
        }
    )


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


class ReservationLineRequestSchema(Schema):
    """One line to reserve."""

    product_id = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_ID))
    quantity = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_LINE_QUANTITY))


class ReservationRequestSchema(Schema):
    """Stock to take for one sale: ``items`` (1 to 50 distinct products), or one line.

    The one-line form ``{"sale_id", "product_id", "quantity"}`` is the older
    body; it is read as one line. Either way the result is ``lines``: a list
    of ``(product_id, quantity)``.
    """

    sale_id = fields.UUID(required=True)
    items = fields.List(
        fields.Nested(ReservationLineRequestSchema),
        validate=validate.Length(min=1, max=MAX_LINES),
        metadata={"description": f"1 to {MAX_LINES} lines of distinct products."},
    )
    product_id = StrictInteger(
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={"description": "One-line form (with quantity), instead of items."},
    )
    quantity = StrictInteger(
        validate=validate.Range(min=1, max=MAX_QUANTITY),
        metadata={"description": "One-line form (with product_id), instead of items."},
    )

    @validates_schema
    def _one_form(self, data: dict[str, Any], **_kwargs: Any) -> None:
        one_line = [name for name in ("product_id", "quantity") if name in data]
        if "items" in data:
            if one_line:
                raise ValidationError("Give items, or product_id and quantity, not both.", "items")
            products = [line["product_id"] for line in data["items"]]
            if len(set(products)) != len(products):
                raise ValidationError("Each product may appear on one line only.", "items")
        elif len(one_line) != 2:
            raise ValidationError("Give items, or product_id and quantity.", "items")

    @post_load
    def _lines(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        if "items" in data:
            lines = [(line["product_id"], line["quantity"]) for line in data["items"]]
        else:
            lines = [(data["product_id"], data["quantity"])]
        return {"sale_id": data["sale_id"], "lines": lines}


class ReservationBatchItemSchema(Schema):
    """One sale's reservation in a batch: its key and the body of its single call."""

    idempotency_key = idempotency_key_field()
    request = fields.Nested(ReservationRequestSchema, required=True)


class ReservationBatchSchema(BatchSchemaMixin, Schema):
    """Reservations of several sales (``POST /internal/reservations/batch``)."""

    items = items_field(ReservationBatchItemSchema)


class ReservationItemSchema(Schema):
    """A reserved line, with the price and name of its product when it was reserved."""

    product_id = fields.Integer()
    name = fields.String()
    quantity = fields.Integer()
    unit_price = Money()
    line_total = Money(digits=SALE_TOTAL_DIGITS)


class ReservationSchema(Schema):
    """Stock taken for a sale, line by line (see :func:`dump_reservation`).

    ``product_id``, ``quantity``, ``unit_price`` and ``name`` are the single
    line's values for a one-line reservation, and null for several lines.
    """

    sale_id = fields.UUID()
    status = fields.String(metadata={"enum": list(RESERVATION_STATUSES)})
    items = fields.List(fields.Nested(ReservationItemSchema))
    total = Money(digits=SALE_TOTAL_DIGITS)
    reserved_by = fields.String()
    created_at = fields.DateTime()
    released_at = fields.DateTime(allow_none=True)
    returned_at = fields.DateTime(allow_none=True)
    product_id = fields.Integer(allow_none=True)
    quantity = fields.Integer(allow_none=True)
    unit_price = Money(allow_none=True)
    name = fields.String(allow_none=True)


def dump_reservation(reservation: Any) -> dict[str, Any]:
    """A reservation (with its ``lines`` loaded) as :class:`ReservationSchema` describes it.

    Built by hand, like :func:`dump_product`: a reservation is answered on
    every purchase.
    """
    items = []
    total = Decimal(0)
    for line in reservation.lines:
        line_total = line.unit_price * line.quantity
        total += line_total
        items.append(
            {
                "product_id": line.product_id,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": format_money(line.unit_price),
                "line_total": format_money(line_total),
            }
        )
    single = items[0] if len(items) == 1 else None
    return {
        "sale_id": str(reservation.sale_id),
        "status": reservation.status,
        "items": items,
        "total": format_money(total),
        "reserved_by": reservation.reserved_by,
        "created_at": reservation.created_at.isoformat(),
        "released_at": _isoformat(reservation.released_at),
        "returned_at": _isoformat(reservation.returned_at),
        "product_id": single and single["product_id"],
        "quantity": single and single["quantity"],
        "unit_price": single and single["unit_price"],
        "name": single and single["name"],
    }


def _isoformat(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


ReservationPageSchema = page_schema(ReservationSchema, "ReservationPage")


class ReservationListArgsSchema(PageArgsSchema):
    """Query of ``GET /internal/reservations``."""

    status = fields.String(validate=validate.OneOf(RESERVATION_STATUSES))
    product_id = fields.Integer(
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={"description": "Reservations with a line of this product."},
    )
