"""The catalog: goods available for sale, read from inventory (no copy is kept here)."""

from __future__ import annotations

from typing import Any

from sales_service.clients import InventoryClient
from shopkit.errors import NotFound, ProblemError


def unexpected_answer() -> ProblemError:
    """503: inventory answered something the catalog or the cart cannot read (nothing changed)."""
    return ProblemError(
        503,
        "dependency_unavailable",
        "The inventory service gave an unexpected answer.",
        headers={"Retry-After": "5"},
        dependency="inventory",
    )


def catalog_page(inventory: InventoryClient, args: dict[str, Any]) -> dict[str, Any]:
    """A page of in-stock products: ``{items: [{id, name, price}], page, page_size, total}``."""
    params = {k: v for k, v in args.items() if v is not None}
    params["in_stock"] = "true"
    answer = inventory.products(params)
    if answer.status != 200:
        raise unexpected_answer()
    body = answer.body
    return {
        "items": [
            {"id": p["id"], "name": p["name"], "price": p["price"]} for p in body.get("items", [])
        ],
        "page": body.get("page", args.get("page")),
        "page_size": body.get("page_size", args.get("page_size")),
        "total": body.get("total", 0),
    }


def catalog_item(inventory: InventoryClient, product_id: int) -> dict[str, Any]:
    """One product's details (404 if unknown or archived)."""
    answer = inventory.product(product_id)
    if answer.status == 404:
        raise NotFound(f"No product {product_id}.")
    if answer.status != 200:
        raise unexpected_answer()
    product = answer.body
    return {
        "id": product["id"],
        "name": product["name"],
        "price": product["price"],
        "category": product.get("category"),
        "description": product.get("description"),
        "stock": product.get("stock"),
        "in_stock": bool(product.get("stock")),
    }
