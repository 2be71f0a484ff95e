"""HTTP routes of the inventory service: parse, call a business operation, respond."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint

from inventory_service import catalogue, images, reservations, stock
from inventory_service.clients import PaymentsClient
from inventory_service.metrics import STOCK_RESERVATIONS
from inventory_service.models import IMAGE_MAX_BYTES, IMAGE_MEDIA_TYPES, IdempotencyKey, Product
from inventory_service.schemas import (
    BatchCreateSchema,
    BatchResultSchema,
    ProductCreateSchema,
    ProductImageSchema,
    ProductPageSchema,
    ProductPatchSchema,
    ProductSchema,
    ProductSearchArgsSchema,
    QuantitySchema,
    ReservationBatchSchema,
    ReservationListArgsSchema,
    ReservationPageSchema,
    ReservationRequestSchema,
    ReservationSchema,
    dump_image,
    dump_product,
    dump_reservation,
)
from shopkit.auth import ROLE_ADMIN, current_principal, require_principal, requires, requires_caller
from shopkit.batch import BatchAnswersSchema, respond_batch
from shopkit.db import get_session
from shopkit.idempotency import (
    idempotency_key_doc,
    idempotency_key_from_request,
    respond_idempotently,
)
from shopkit.input_guard import raw_body
from shopkit.metrics import counts_outcomes
from shopkit.openapi import LOCATION_HEADER

products_blp = Blueprint(
    "products", __name__, description="The catalogue: search, details, admin management, stock."
)
internal_blp = Blueprint(
    "internal",
    __name__,
    url_prefix="/internal",
    description="Stock reservations for sales (service tokens; admins may read them).",
)

# Schemas used to build bodies by hand: made once, as marshmallow schemas are reusable.
_PRODUCT = ProductSchema()


def _product_json(product: Product) -> dict[str, Any]:
    return _PRODUCT.dump(product)  # type: ignore[no-any-return]


def _payments() -> PaymentsClient:
    return current_app.extensions["inventory_payments"]  # type: ignore[no-any-return]


# --- catalogue (anyone) -----------------------------------------------------------------------


@products_blp.route("/products", methods=["GET"])
@products_blp.response(200, ProductPageSchema)
@products_blp.arguments(ProductSearchArgsSchema(), location="query")
def list_products(args: dict[str, Any]) -> ResponseReturnValue:
    """Search the catalogue (archived products are never listed); no token needed."""
    page = catalogue.search(get_session(), args)
    return jsonify({**page, "items": [dump_product(item) for item in page["items"]]})


@products_blp.route("/products/<int:product_id>", methods=["GET"])
@products_blp.response(200, ProductSchema)
def get_product(product_id: int) -> Product:
    """One product. Archived products are 404, except for admins."""
    principal = current_principal()
    is_admin = principal is not None and principal.is_admin
    return catalogue.get_product(get_session(), product_id, include_archived=is_admin)


# --- catalogue management (admin) -------------------------------------------------------------


@products_blp.route("/products", methods=["POST"])
@products_blp.response(201, ProductSchema, headers=LOCATION_HEADER)
@requires(ROLE_ADMIN)
@products_blp.arguments(ProductCreateSchema())
def create_product(data: dict[str, Any]) -> tuple[Product, int, dict[str, str]]:
    """Add a product to the catalogue (admin)."""
    product = catalogue.create(get_session(), data)
    return product, 201, {"Location": f"/products/{product.id}"}


@products_blp.route("/products/batch", methods=["POST"])
@products_blp.response(201, BatchResultSchema)
@requires(ROLE_ADMIN)
@products_blp.arguments(BatchCreateSchema())
def create_products(data: dict[str, Any]) -> ResponseReturnValue:
    """Create up to 1000 products in one transaction, all or none (admin, for the seeder)."""
    created = catalogue.create_batch(get_session(), data["products"])
    items = [dump_product(row) for row in created]
    return jsonify({"created": len(items), "items": items}), 201


@products_blp.route("/products/<int:product_id>", methods=["PATCH"])
@products_blp.response(200, ProductSchema)
@requires(ROLE_ADMIN)
@products_blp.arguments(ProductPatchSchema())
def patch_product(changes: dict[str, Any], product_id: int) -> Product:
    """Change name, category, price, description or archived (admin); not stock."""
    return catalogue.update(get_session(), product_id, changes)


@products_blp.route("/products/<int:product_id>", methods=["DELETE"])
@products_blp.response(204)
@requires(ROLE_ADMIN)
def delete_product(product_id: int) -> ResponseReturnValue:
    """Archive a product (admin): no longer listed or sold; reservations and history stay."""
    catalogue.archive(get_session(), product_id)
    return "", 204


@products_blp.route("/products/<int:product_id>/restock", methods=["POST"])
@products_blp.response(200, ProductSchema)
@products_blp.doc(parameters=[idempotency_key_doc()])
@products_blp.alt_response(409, description="`stock_limit`: the stock would exceed its limit.")
@requires(ROLE_ADMIN)
@products_blp.arguments(QuantitySchema())
def restock(data: dict[str, Any], product_id: int) -> ResponseReturnValue:
    """Add stock (admin). An optional ``Idempotency-Key`` makes retries safe."""
    session = get_session()

    def operation() -> tuple[int, dict[str, Any]]:
        return 200, _product_json(stock.restock(session, product_id, data["quantity"]))

    return respond_idempotently(IdempotencyKey, operation, key_required=False)


@products_blp.route("/products/<int:product_id>/deduct", methods=["POST"])
@products_blp.response(200, ProductSchema)
@products_blp.doc(parameters=[idempotency_key_doc()])
@products_blp.alt_response(409, description="`insufficient_stock`: stock never goes negative.")
@requires(ROLE_ADMIN)
@products_blp.arguments(QuantitySchema())
def deduct(data: dict[str, Any], product_id: int) -> ResponseReturnValue:
    """Remove stock (admin correction). An optional ``Idempotency-Key`` makes retries safe."""
    session = get_session()

    def operation() -> tuple[int, dict[str, Any]]:
        return 200, _product_json(stock.deduct(session, product_id, data["quantity"]))

    return respond_idempotently(IdempotencyKey, operation, key_required=False)


# --- product images ---------------------------------------------------------------------------

#: Caches keep an image but ask again each time (a 304 while its ETag holds), so a new
#: upload shows at once.
IMAGE_CACHE_CONTROL = "public, no-cache"
#: Even opened on its own, an image (an SVG above all) runs and loads nothing.
IMAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; sandbox; frame-ancestors 'none'"
_BINARY = {"schema": {"type": "string", "format": "binary"}}


@products_blp.route("/products/<int:product_id>/image", methods=["PUT"])
@raw_body
@products_blp.response(200, ProductImageSchema)
@products_blp.alt_response(413, description="`image_too_large`: more than 1 MiB.")
@products_blp.alt_response(
    415,
    description="`unsupported_image`: not a PNG, JPEG, WebP or SVG (an SVG with scripts, "
    "event handlers or external links is refused too).",
)
@products_blp.doc(
    requestBody={
        "required": True,
        "description": f"The image's bytes, at most {IMAGE_MAX_BYTES} (1 MiB). The type is "
        "read from the bytes, not from `Content-Type`.",
        "content": {media_type: _BINARY for media_type in IMAGE_MEDIA_TYPES},
    }
)
@requires(ROLE_ADMIN)
def put_image(product_id: int) -> ResponseReturnValue:
    """Set the product's one image, replacing any before it (admin; archived products too)."""
    image = images.store(get_session(), product_id, request.get_data(cache=False))
    return jsonify(dump_image(image))


@products_blp.route("/products/<int:product_id>/image", methods=["GET"])
@products_blp.response(200)
@products_blp.doc(
    responses={
        "200": {
            "description": "The image, with its `ETag`.",
            "content": {media_type: _BINARY for media_type in IMAGE_MEDIA_TYPES},
            "headers": {
                "ETag": {"schema": {"type": "string"}, "description": "The image's SHA-256."},
                "Cache-Control": {"schema": {"type": "string"}},
            },
        },
        "304": {"description": "Not modified: `If-None-Match` names the current ETag."},
    },
    parameters=[
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "An ETag from an earlier answer: 304 while the image is unchanged.",
        }
    ],
)
def get_image(product_id: int) -> ResponseReturnValue:
    """The product's image (404 when it has none; archived products only for admins)."""
    principal = current_principal()
    is_admin = principal is not None and principal.is_admin
    image, archived = images.image_of(get_session(), product_id, include_archived=is_admin)
    unchanged = request.if_none_match.contains(image.sha256)
    # The bytes are read only when they are sent.
    response = Response(b"" if unchanged else image.content, mimetype=image.media_type)
    response.set_etag(image.sha256)
    # What an admin sees of an archived product is not for shared caches.
    response.headers["Cache-Control"] = "private, no-cache" if archived else IMAGE_CACHE_CONTROL
    response.headers["Content-Security-Policy"] = IMAGE_POLICY
    response.headers["Content-Disposition"] = f'inline; filename="product-{product_id}"'
    if unchanged:
        response.status_code = 304
    return response


# --- reservations (service tokens) ------------------------------------------------------------


@internal_blp.route("/reservations", methods=["POST"])
@internal_blp.response(201, ReservationSchema, headers=LOCATION_HEADER)
@internal_blp.doc(parameters=[idempotency_key_doc(required=True)])
@internal_blp.alt_response(
    404, description="`not_found`: unknown or archived products, listed in `product_ids`."
)
@internal_blp.alt_response(
    409,
    description="`insufficient_stock` (every short line in `products`), `already_reserved` "
    "(this sale holds a reservation), `idempotency_key_in_use`.",
)
@requires_caller("sales")
@internal_blp.arguments(ReservationRequestSchema())
@counts_outcomes(STOCK_RESERVATIONS)
def reserve(data: dict[str, Any]) -> ResponseReturnValue:
    """Take every line's stock for a sale, all or none, once per ``Idempotency-Key`` and sale."""
    principal = require_principal()
    session = get_session()

    def operation() -> tuple[int, dict[str, Any]]:
        reservation = reservations.reserve(
            session, data["sale_id"], data["lines"], principal.subject
        )
        return 201, dump_reservation(reservation)

    return respond_idempotently(
        IdempotencyKey,
        operation,
        key_required=True,
        location=lambda body: f"/internal/reservations/{body['sale_id']}",
    )


@internal_blp.route("/reservations/batch", methods=["POST"])
@internal_blp.response(200, BatchAnswersSchema)
@requires_caller("sales")
@internal_blp.arguments(ReservationBatchSchema())
def reserve_batch(data: dict[str, Any]) -> ResponseReturnValue:
    """Reserve for up to 100 sales in one transaction, each answered as by
    ``POST /internal/reservations`` under its own key (a refusal never fails its neighbours).
    The stock events of the sales reserved are written together, with one statement."""
    principal = require_principal()
    session = get_session()
    batch_events = reservations.BatchEvents()

    def operation(wanted: dict[str, Any]) -> Any:
        def reserve_one() -> tuple[int, dict[str, Any]]:
            reservation = reservations.reserve(
                session,
                wanted["sale_id"],
                wanted["lines"],
                principal.subject,
                deferred=batch_events.for_sale(wanted["sale_id"]),
            )
            return 201, dump_reservation(reservation)

        return reserve_one

    return respond_batch(
        IdempotencyKey,
        data["items"],
        single_path="/internal/reservations",
        # Rows are locked in ascending product order, as one reservation locks them.
        order=lambda wanted: sorted(product_id for product_id, _ in wanted["lines"]),
        lock=lambda requests: reservations.lock_for_batch(
            session, [wanted["lines"] for wanted in requests]
        ),
        operation=operation,
        outcomes=STOCK_RESERVATIONS,
        applied=lambda reserved: batch_events.emit(
            session, [wanted["sale_id"] for wanted in reserved]
        ),
    )


@internal_blp.route("/reservations/<uuid:sale_id>/release", methods=["POST"])
@internal_blp.response(200, ReservationSchema)
@internal_blp.doc(parameters=[idempotency_key_doc()])
@internal_blp.alt_response(404, description="The sale has no reservation.")
@internal_blp.alt_response(
    409,
    description="`reservation_sold`: the sale was paid (only its cancellation returns the "
    "stock); `reservation_returned`.",
)
@internal_blp.alt_response(
    503,
    description="`dependency_unavailable` (customers cannot say whether the sale was paid), "
    "`stock_limit` (no room to take the stock back now): not stored under the key, retry.",
)
@requires_caller("sales")
def release(sale_id: uuid.UUID) -> ResponseReturnValue:
    """Put an unpaid sale's stock back, exactly once; releasing again changes nothing."""
    session = get_session()
    idempotency_key_from_request(required=False)  # a bad key is 400 before customers is asked
    reservations.require_unpaid(session, sale_id, _payments())

    def operation() -> tuple[int, dict[str, Any]]:
        return 200, dump_reservation(reservations.release(session, sale_id))

    return respond_idempotently(IdempotencyKey, operation, key_required=False)


@internal_blp.route("/reservations/<uuid:sale_id>/return", methods=["POST"])
@internal_blp.response(200, ReservationSchema)
@internal_blp.doc(parameters=[idempotency_key_doc(required=True)])
@internal_blp.alt_response(404, description="The sale has no reservation.")
@internal_blp.alt_response(
    409,
    description="`not_refunded`: customers holds no refund of the sale yet (not stored under "
    "the key); `reservation_released`.",
)
@internal_blp.alt_response(
    503,
    description="`dependency_unavailable` (customers cannot be asked), `stock_limit`: not "
    "stored under the key, retry.",
)
@requires_caller("sales")
def return_stock(sale_id: uuid.UUID) -> ResponseReturnValue:
    """Give a cancelled, refunded order's stock back, exactly once; again changes nothing."""
    session = get_session()
    idempotency_key_from_request(required=True)  # a missing key is 400 before customers is asked
    reservations.require_refund(session, sale_id, _payments())

    def operation() -> tuple[int, dict[str, Any]]:
        return 200, dump_reservation(reservations.return_stock(session, sale_id))

    return respond_idempotently(IdempotencyKey, operation, key_required=True)


@internal_blp.route("/reservations/<uuid:sale_id>", methods=["GET"])
@internal_blp.response(200, ReservationSchema)
@requires_caller("sales", admins=True)
def get_reservation(sale_id: uuid.UUID) -> ResponseReturnValue:
    """A sale's reservation with its lines (services and admins, for recovery and audits)."""
    return jsonify(dump_reservation(reservations.get_reservation(get_session(), sale_id)))


@internal_blp.route("/reservations", methods=["GET"])
@internal_blp.response(200, ReservationPageSchema)
@requires_caller("sales", admins=True)
@internal_blp.arguments(ReservationListArgsSchema(), location="query")
def list_reservations(args: dict[str, Any]) -> ResponseReturnValue:
    """Reservations with their lines, newest first, by ``status`` and ``product_id`` (audits)."""
    page = reservations.list_reservations(get_session(), args)
    return jsonify({**page, "items": [dump_reservation(item) for item in page["items"]]})
