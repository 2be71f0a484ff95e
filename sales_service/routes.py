"""HTTP routes of the sales service: parse, call the saga, the cart or a query, respond."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app, json
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint

from sales_service import cart, catalog, lifecycle, queries
from sales_service.batching import Batcher
from sales_service.cancellation import cancel
from sales_service.clients import SaleClients
from sales_service.models import COMPLETED, FAILED, Sale
from sales_service.saga import purchase
from sales_service.saga_run import NewSale
from sales_service.saga_store import find_by_key
from sales_service.schemas import (
    CartQuantitySchema,
    CartSchema,
    CatalogArgsSchema,
    CatalogDetailSchema,
    CatalogPageSchema,
    HistoryArgsSchema,
    PurchaseSchema,
    PurchasesQuerySchema,
    PurchasesSchema,
    SaleDetailSchema,
    SalePageSchema,
    SaleSchema,
    SalesQuerySchema,
    ShipmentSchema,
)
from shopkit.auth import (
    ROLE_ADMIN,
    ROLE_CUSTOMER,
    ensure_self_or_admin,
    require_principal,
    requires,
)
from shopkit.db import get_session
from shopkit.errors import problem_body, problem_response
from shopkit.idempotency import (
    REPLAYED_HEADER,
    idempotency_key_doc,
    idempotency_key_from_request,
    request_fingerprint,
)
from shopkit.openapi import LOCATION_HEADER
from shopkit.service_client import DependencyUnavailable

sales_blp = Blueprint(
    "sales",
    __name__,
    description="Orders (the saga), their life after payment, and purchase history.",
)
cart_blp = Blueprint("cart", __name__, description="The signed-in customer's cart and checkout.")
catalog_blp = Blueprint("catalog", __name__, description="Goods available for sale.")

#: HTTP status of each way a sale can fail.
FAILURE_STATUS = {
    "insufficient_stock": 409,
    "insufficient_funds": 409,
    "customer_inactive": 409,
    "customer_not_found": 409,
    "product_not_found": 404,
}
FAILURE_DETAIL = {
    "insufficient_stock": "Not enough stock for this order.",
    "insufficient_funds": "The wallet balance does not cover the total.",
    "customer_inactive": "The customer account is deactivated.",
    "customer_not_found": "The customer account does not exist.",
    "product_not_found": "No such product.",
}


# Made once, as marshmallow schemas are reusable.
_SALE = SaleSchema()


def _clients() -> SaleClients:
    return current_app.extensions["sales_clients"]  # type: ignore[no-any-return]


def _batcher() -> Batcher:
    return current_app.extensions["sales_batcher"]  # type: ignore[no-any-return]


def _json(sale: Sale, status: int, *, replayed: bool) -> Response:
    response = Response(json.dumps(_SALE.dump(sale)), status=status, mimetype="application/json")
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response


def _sale_response(sale: Sale, *, replayed: bool) -> Response:
    """201 with the completed order, the problem that explains a failed one, or 202 with an
    order a replay found still pending or moved on since it completed
    (:data:`MOVED_ON_ANSWER`)."""
    headers = {REPLAYED_HEADER: "true"} if replayed else {}
    if sale.status == FAILED:
        code = sale.failure_code or "conflict"
        body = problem_body(
            FAILURE_STATUS.get(code, 409),
            "not_found" if code == "product_not_found" else code,
            FAILURE_DETAIL.get(code, "The purchase failed."),
            sale_id=str(sale.id),
            sale_status=FAILED,
            **(sale.failure_detail or {}),
        )
        return problem_response(body, headers)
    response = _json(sale, 201 if sale.status == COMPLETED else 202, replayed=replayed)
    response.headers["Location"] = f"/sales/{sale.id}"
    return response


PURCHASE_ANSWERS = (
    (404, "Unknown or archived product (the order is kept as failed; `product_ids` names them)."),
    (
        409,
        "`insufficient_stock` (`products` names every short line) or `insufficient_funds` "
        "(kept as failed), `sale_in_progress`.",
    ),
    (
        503,
        "`sale_pending` (with `sale_id`, `sale_status` and `reason`): the order is recorded, "
        "stays pending and is settled by recovery. Any other 503 code "
        "(`dependency_unavailable`, `database_unavailable`, `auth_unavailable`): nothing was "
        "recorded, retry (`database_unavailable` with `sale_status: unknown` names the order "
        "that may have been recorded).",
    ),
)


#: The order as it stands, neither completed nor failed: nothing was bought again.
MOVED_ON_ANSWER = (
    "A retry with the `Idempotency-Key` of an order that has moved on since it completed "
    "(`shipped`, `delivered`, `cancelling`, `cancelled`), or a checkout while the cart's "
    "earlier order is still `pending`: the order as it stands now, with "
    "`Idempotent-Replayed: true`. Nothing was bought again."
)


def _purchase_doc(blueprint: Blueprint) -> Any:
    """The documentation every way of placing an order shares."""

    def decorate(view: Any) -> Any:
        for status, description in PURCHASE_ANSWERS:
            view = blueprint.alt_response(status, description=description)(view)
        view = blueprint.alt_response(
            202, schema=SaleSchema, description=MOVED_ON_ANSWER, headers=LOCATION_HEADER
        )(view)
        return blueprint.doc(
            parameters=[
                idempotency_key_doc(description="Retrying with the same key never buys twice.")
            ]
        )(view)

    return decorate


def _place(lines: tuple[tuple[int, int], ...], path: str, *, from_cart: bool) -> Response:
    key = idempotency_key_from_request(required=False)
    fingerprint = request_fingerprint("POST", path, [list(line) for line in lines]) if key else None
    return _order(NewSale(lines, idempotency_key=key, fingerprint=fingerprint, from_cart=from_cart))


def _order(request: NewSale) -> Response:
    sale, replayed = purchase(
        get_session(), _clients(), require_principal(), request, batcher=_batcher()
    )
    return _sale_response(sale, replayed=replayed)


@sales_blp.route("/sales", methods=["POST"])
@sales_blp.response(201, SaleSchema, headers=LOCATION_HEADER)
@_purchase_doc(sales_blp)
@requires(ROLE_CUSTOMER)
@sales_blp.arguments(PurchaseSchema())
def create_sale(data: dict[str, Any]) -> ResponseReturnValue:
    """Place an order of one product or of 1-50 lines: reserve all stock, debit, complete."""
    return _place(data["lines"], "/sales", from_cart=False)


@sales_blp.route("/sales/<uuid:sale_id>/cancellation", methods=["POST"])
@sales_blp.response(200, SaleSchema)
@sales_blp.doc(parameters=[idempotency_key_doc(description="A retry replays the first answer.")])
@sales_blp.alt_response(404, description="No such order, or not the caller's.")
@sales_blp.alt_response(
    409,
    description="`invalid_transition` (only a completed order can be cancelled; `status` names "
    "the current one), `cancellation_in_progress`, `refund_refused` (the wallet would go over "
    "its limit: the order stays completed).",
)
@sales_blp.alt_response(
    503,
    description="`sale_pending`: the order stays `cancelling` and recovery refunds "
    "and restocks it.",
)
@requires(ROLE_CUSTOMER, ROLE_ADMIN)
def cancel_sale(sale_id: uuid.UUID) -> ResponseReturnValue:
    """Cancel a completed, unshipped order: refund its total and return its stock, once."""
    key = idempotency_key_from_request(required=False)
    sale, replayed = cancel(get_session(), _clients(), require_principal(), sale_id, key)
    return _json(sale, 200, replayed=replayed)


@sales_blp.route("/sales/<uuid:sale_id>/shipment", methods=["POST"])
@sales_blp.response(200, SaleSchema)
@sales_blp.alt_response(404, description="No such order.")
@sales_blp.alt_response(409, description="`invalid_transition`: only a completed order ships.")
@requires(ROLE_ADMIN)
@sales_blp.arguments(ShipmentSchema())
def ship_sale(data: dict[str, Any], sale_id: uuid.UUID) -> Sale:
    """Mark a completed order shipped, with an optional carrier and tracking number (admin)."""
    session = get_session()
    sale = lifecycle.ship(session, sale_id, data["carrier"], data["tracking_number"])
    return queries.get_sale(session, sale.id, require_principal())


@sales_blp.route("/sales/<uuid:sale_id>/delivery", methods=["POST"])
@sales_blp.response(200, SaleSchema)
@sales_blp.alt_response(404, description="No such order.")
@sales_blp.alt_response(409, description="`invalid_transition`: only a shipped order arrives.")
@requires(ROLE_ADMIN)
def deliver_sale(sale_id: uuid.UUID) -> Sale:
    """Mark a shipped order delivered (admin)."""
    session = get_session()
    lifecycle.deliver(session, sale_id)
    return queries.get_sale(session, sale_id, require_principal())


# --- the cart (the signed-in customer's own) ---------------------------------------------------


def _customer_id() -> int:
    customer_id = require_principal().customer_id
    assert customer_id is not None  # a customer token always names its account
    return customer_id


def _cart() -> dict[str, Any]:
    return cart.view(get_session(), _clients().inventory, _customer_id())


@cart_blp.route("/cart", methods=["GET"])
@cart_blp.response(200, CartSchema)
@requires(ROLE_CUSTOMER)
def get_cart() -> ResponseReturnValue:
    """The caller's cart with current names, prices and availability (one inventory call)."""
    return _cart()


@cart_blp.route("/cart/items/<int:product_id>", methods=["PUT"])
@cart_blp.response(200, CartSchema)
@cart_blp.alt_response(404, description="Unknown or archived product.")
@cart_blp.alt_response(409, description="`cart_full`: the cart holds 50 other products.")
@requires(ROLE_CUSTOMER)
@cart_blp.arguments(CartQuantitySchema())
def put_cart_item(data: dict[str, Any], product_id: int) -> ResponseReturnValue:
    """Set how many units of a product the cart holds (1-100); answers the whole cart."""
    session = get_session()
    cart.set_item(session, _clients().inventory, _customer_id(), product_id, data["quantity"])
    return _cart()


@cart_blp.route("/cart/items/<int:product_id>", methods=["DELETE"])
@cart_blp.response(204)
@requires(ROLE_CUSTOMER)
def delete_cart_item(product_id: int) -> ResponseReturnValue:
    """Take a product out of the cart."""
    cart.remove_item(get_session(), _customer_id(), product_id)
    return "", 204


@cart_blp.route("/cart", methods=["DELETE"])
@cart_blp.response(204)
@requires(ROLE_CUSTOMER)
def delete_cart() -> ResponseReturnValue:
    """Empty the cart."""
    cart.clear(get_session(), _customer_id())
    return "", 204


@cart_blp.route("/cart/checkout", methods=["POST"])
@cart_blp.response(201, SaleSchema, headers=LOCATION_HEADER)
@_purchase_doc(cart_blp)
@cart_blp.alt_response(409, description="`cart_empty`, or as for `POST /sales`.")
@requires(ROLE_CUSTOMER)
def checkout() -> ResponseReturnValue:
    """Place the cart as one order; its lines leave the cart when the order completes.

    Same answers as ``POST /sales``. A retry with the same ``Idempotency-Key``
    replays the first order even though the cart has been emptied since. While
    an earlier checkout of this cart is still ``pending``, any checkout (whatever
    its key) answers with that order, as a retry of it would, and places no other.
    """
    key = idempotency_key_from_request(required=False)
    session = get_session()
    customer_id = _customer_id()
    if key is not None:
        placed = find_by_key(session, customer_id, key)
        session.rollback()
        if placed is not None:
            return _place(placed_lines(placed), "/cart/checkout", from_cart=True)
    cart.lock_checkout(session, customer_id)
    pending = cart.pending_checkout(session, customer_id)
    if pending is not None:
        return _pending_checkout(pending)
    return _place(cart.checkout_lines(session, customer_id), "/cart/checkout", from_cart=True)


def _pending_checkout(sale: Sale) -> Response:
    """Answer a checkout with the cart's order still pending: a retry of that order (which
    drives it if nobody else is), or the order as it stands (202) when it was placed
    without a key or its dependencies are known to be down right now."""
    as_it_stands = _sale_response(sale, replayed=True)
    retry = None
    if sale.idempotency_key is not None:
        retry = NewSale(
            placed_lines(sale),
            idempotency_key=sale.idempotency_key,
            fingerprint=sale.request_fingerprint,
            from_cart=True,
        )
    get_session().rollback()
    if retry is None:
        return as_it_stands
    try:
        return _order(retry)
    except DependencyUnavailable:  # an open circuit: the order is pending all the same
        return as_it_stands


def placed_lines(sale: Sale) -> tuple[tuple[int, int], ...]:
    """An order's lines as ``(product_id, quantity)`` pairs."""
    return tuple((line.product_id, line.quantity) for line in sale.lines)


@sales_blp.route("/sales/<uuid:sale_id>", methods=["GET"])
@sales_blp.response(200, SaleDetailSchema)
@requires(ROLE_CUSTOMER, ROLE_ADMIN)
def get_sale(sale_id: uuid.UUID) -> Sale:
    """One sale with its status and saga steps (its buyer or an admin)."""
    return queries.get_sale(get_session(), sale_id, require_principal())


@sales_blp.route("/customers/<string:username>/sales", methods=["GET"])
@sales_blp.response(200, SalePageSchema)
@requires(ROLE_CUSTOMER, ROLE_ADMIN)
@sales_blp.arguments(HistoryArgsSchema(), location="query")
def customer_history(args: dict[str, Any], username: str) -> ResponseReturnValue:
    """A customer's orders, newest first, optionally of one status or holding one product
    (the customer or an admin)."""
    ensure_self_or_admin(require_principal(), username)
    return queries.history(get_session(), username, args)


@sales_blp.route("/sales", methods=["GET"])
@sales_blp.response(200, SalePageSchema)
@requires(ROLE_ADMIN)
@sales_blp.arguments(SalesQuerySchema(), location="query")
def list_sales(args: dict[str, Any]) -> ResponseReturnValue:
    """All orders, newest first, filtered by status, customer and product (admin)."""
    return queries.list_sales(get_session(), args)


@catalog_blp.route("/catalog", methods=["GET"])
@catalog_blp.response(200, CatalogPageSchema)
@catalog_blp.arguments(CatalogArgsSchema(), location="query")
def list_catalog(args: dict[str, Any]) -> ResponseReturnValue:
    """Goods in stock: id, name and price (from inventory)."""
    return catalog.catalog_page(_clients().inventory, args)


@catalog_blp.route("/catalog/<int:product_id>", methods=["GET"])
@catalog_blp.response(200, CatalogDetailSchema)
def catalog_item(product_id: int) -> ResponseReturnValue:
    """One product's details (from inventory)."""
    return catalog.catalog_item(_clients().inventory, product_id)


@sales_blp.route("/sales/purchases", methods=["GET"])
@sales_blp.response(200, PurchasesSchema)
@requires(ROLE_ADMIN)
@sales_blp.arguments(PurchasesQuerySchema(), location="query")
def purchases(args: dict[str, int]) -> ResponseReturnValue:
    """Whether a customer has a paid (completed, shipped, delivered) order of a product.

    For admins, beside reviews' ``GET /admin/verified-purchases``: reviews learns
    purchases from the order events, and no service calls this.
    """
    return queries.purchases(get_session(), args["customer_id"], args["product_id"])
