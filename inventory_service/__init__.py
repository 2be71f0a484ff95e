"""The inventory service (:5001): the product catalogue, its stock and stock reservations.

Anyone may search and read the catalogue; admins manage products and stock;
sales take stock through ``/internal/reservations`` (service tokens,
idempotent per ARCHITECTURE §7) and put it back by releasing the reservation.
Stock changes only by conditional updates, so it never goes negative.

Decisions where the contract is silent:

- ``GET /products``: ``sort`` is ``newest`` (default), ``price``, ``-price``,
  ``name`` or ``-name``; ``in_stock=false`` lists sold-out products; archived
  products are never listed. ``q`` is a full-text prefix search (every word of
  ``q`` must begin a word of the name or description, in any order, ignoring
  case; see :mod:`inventory_service.models` for why not ``pg_trgm``).
- ``description`` is optional and may be empty (at most 5000 characters);
  names are trimmed, 1 to 200 characters. A new product's ``stock`` is 0 to
  1,000,000 (default 0); stock never exceeds 2,000,000,000 (409 ``stock_limit``).
- ``PATCH /products/{id}`` changes name, category, price, description and
  ``archived`` (``false`` restores a deleted product), never ``stock``: stock
  moves only through restock, deduct and reservations, so no update is lost.
- ``DELETE`` archives: the product is hidden (404) from everyone but admins,
  cannot be reserved, and keeps its reservations. Admins may still restock or
  deduct it, and releasing a reservation puts stock back on it.
- A reservation is one row per sale (``sale_id`` is its key), kept forever as
  ``reserved`` or ``released``. A second reservation for a sale is 409
  ``already_reserved``, even after its release. Releasing is idempotent by
  itself (an ``Idempotency-Key`` is optional); an unknown sale is 404.
  ``GET /internal/reservations[/{sale_id}]`` (service or admin) serve
  recovery and audits.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from inventory_service.models import SCHEMA
from inventory_service.routes import internal_blp, products_blp
from shopkit.app import create_service_app


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the inventory service app (see :func:`shopkit.app.create_service_app`)."""
    return create_service_app(
        service="inventory",
        import_name=__name__,
        package=__name__,
        schema=SCHEMA,
        title="Shop inventory service",
        description="Product catalogue with search, stock, and stock reservations for sales.",
        blueprints=[products_blp, internal_blp],
        config=config,
    )
