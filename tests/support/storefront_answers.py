"""Canned answers of the services for the storefront's unit tests: a product, an order, a page."""

from __future__ import annotations

from typing import Any

#: A product as inventory answers it.
PRODUCT = {"id": 7, "name": "Trail Shoes", "category": "clothes", "price": "89.90",
           "description": "Light and grippy.", "stock": 4, "archived": False}  # fmt: skip
#: A completed order as sales answers it, and its id.
SALE_ID = "3f1b2c4d-0000-4000-8000-000000000001"
SALE = {"id": SALE_ID, "status": "completed", "failure_code": None, "username": "ada",
        "items": [{"product_id": 7, "product_name": "Trail Shoes", "quantity": 2,
                   "unit_price": "89.90", "line_total": "179.80"}],
        "total": "179.80", "history": [{"status": "pending", "at": "2025-01-01T10:00:00+00:00"},
                                       {"status": "completed", "at": "2025-01-01T10:00:01+00:00"}],
        "created_at": "2025-01-01T10:00:00+00:00", "updated_at": "2025-01-01T10:00:01+00:00",
        "steps": [{"step": "reserve", "outcome": "ok", "detail": {}, "created_at": "2025-01-01T10:00:00+00:00"}]}  # fmt: skip


def page_of(*items: dict[str, Any]) -> dict[str, Any]:
    """One page of a service's list holding ``items``."""
    return {"items": list(items), "page": 1, "page_size": 20, "total": len(items)}
