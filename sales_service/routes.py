"""HTTP routes of the sales service: parse, call the saga or a query, respond."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app, json
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint

from sales_service import catalog, queries
from sales_service.clients import SaleClients
from sales_service.models import COMPLETED, FAILED, Sale
from sales_service.saga import NewSale, purchase
from sales_service.schemas import (
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
)
from shopkit.auth import (
    ROLE_ADMIN,
    ROLE_CUSTOMER,
    ensure_self_or_admin,
    require_principal,
    requires,
    requires_caller,
)
from shopkit.db import get_session
from shopkit.errors import problem_body, problem_response
from shopkit.idempotency import (
    REPLAYED_HEADER,
    idempotency_key_from_request,
    request_fingerprint,
)

sales_blp = Blueprint("sales", __name__, description="Purchases (the saga) and sales history.")
catalog_blp = Blueprint("catalog", __name__, description="Goods available for sale.")
internal_blp = Blueprint(
    "internal", __name__, url_prefix="/internal", description="For other services."
)

#: HTTP status of each way a sale can fail.
FAILURE_STATUS = {
    "insufficient_stock": 409,
    "insufficient_funds": 409,
    "customer_inactive": 409,
    "customer_not_found": 409,
    "product_not_found": 404,
}
FAILURE_DETAIL = {
    "insufficient_stock": "Not enough stock for this quantity.",
    "insufficient_funds": "The wallet balance does not cover the total.",
    "customer_inactive": "The customer account is deactivated.",
    "customer_not_found": "The customer account does not exist.",
    "product_not_found": "No such product.",
}


# Made once, as marshmallow schemas are reusable.
_SALE = SaleSchema()


def _clients() -> SaleClients:
    return current_app.extensions["sales_clients"]  # type: ignore[no-any-return]


def _sale_response(sale: Sale, *, replayed: bool) -> Response:
    """201 with the completed sale, or the problem that explains a failed one."""
    headers = {REPLAYED_HEADER: "true"} if replayed else {}
    if sale.status == FAILED:
        code = sale.failure_code or "failed"
        body = problem_body(
            FAILURE_STATUS.get(code, 409),
            "not_found" if code == "product_not_found" else code,
            FAILURE_DETAIL.get(code, "The purchase failed."),
            sale_id=str(sale.id),
            sale_status=FAILED,
        )
        return problem_response(body, headers)
    status = 201 if sale.status == COMPLETED else 202
    response = Response(json.dumps(_SALE.dump(sale)), status=status, mimetype="application/json")
    response.headers.update(headers)
    response.headers["Location"] = f"/sales/{sale.id}"
    return response


@sales_blp.route("/sales", methods=["POST"])
@sales_blp.response(201, SaleSchema)
@sales_blp.doc(
    parameters=[
        {
            "in": "header",
            "name": "Idempotency-Key",
            "schema": {"type": "string", "minLength": 1, "maxLength": 200},
            "description": "Retrying with the same key never buys twice.",
        }
    ]
)
@sales_blp.alt_response(404, description="Unknown product (the sale is kept as failed).")
@sales_blp.alt_response(
    409,
    description="`insufficient_stock` or `insufficient_funds` (kept as failed), "
    "`sale_in_progress`.",
)
@sales_blp.alt_response(
    503, description="`dependency_unavailable`: the sale stays pending and is settled by recovery."
)
@requires(ROLE_CUSTOMER)
@sales_blp.arguments(PurchaseSchema())
def create_sale(data: dict[str, Any]) -> ResponseReturnValue:
    """Buy ``quantity`` units of a product: reserve stock, debit the wallet, complete."""
    principal = require_principal()
    key = idempotency_key_from_request(required=False)
    fingerprint = request_fingerprint("POST", "/sales", data) if key else None
    session = get_session()
    sale, replayed = purchase(
        session,
        _clients(),
        principal,
        NewSale(data["product_id"], data["quantity"], idempotency_key=key, fingerprint=fingerprint),
    )
    return _sale_response(sale, replayed=replayed)


@sales_blp.route("/sales/<uuid:sale_id>", methods=["GET"])
@sales_blp.response(200, SaleDetailSchema)
@requires(ROLE_CUSTOMER, ROLE_ADMIN)
def get_sale(sale_id: uuid.UUID) -> ResponseReturnValue:
    """One sale with its status and saga steps (its buyer or an admin)."""
    return queries.get_sale(get_session(), sale_id, require_principal())


@sales_blp.route("/customers/<string:username>/sales", methods=["GET"])
@sales_blp.response(200, SalePageSchema)
@requires(ROLE_CUSTOMER, ROLE_ADMIN)
@sales_blp.arguments(HistoryArgsSchema(), location="query")
def customer_history(args: dict[str, Any], username: str) -> ResponseReturnValue:
    """A customer's purchase history, newest first (the customer or an admin)."""
    ensure_self_or_admin(require_principal(), username)
    return queries.history(
        get_session(), username, args.get("status"), args["page"], args["page_size"]
    )


@sales_blp.route("/sales", methods=["GET"])
@sales_blp.response(200, SalePageSchema)
@requires(ROLE_ADMIN)
@sales_blp.arguments(SalesQuerySchema(), location="query")
def list_sales(args: dict[str, Any]) -> ResponseReturnValue:
    """All sales, newest first, filtered by status, customer and product (admin)."""
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


@internal_blp.route("/purchases", methods=["GET"])
@internal_blp.response(200, PurchasesSchema)
@requires_caller("reviews", admins=True)
@internal_blp.arguments(PurchasesQuerySchema(), location="query")
def purchases(args: dict[str, int]) -> ResponseReturnValue:
    """Whether a customer has a completed purchase of a product (for reviews)."""
    return queries.purchases(get_session(), args["customer_id"], args["product_id"])
