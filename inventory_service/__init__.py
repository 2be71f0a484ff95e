"""The inventory service (:5001): the product catalogue, its stock and stock reservations.

Anyone may search and read the catalogue; admins manage products and stock;
sales take stock through ``/internal/reservations`` (service tokens,
idempotent: docs/architecture.rst, "Idempotency") and put it back by releasing
the reservation.
Stock changes only by conditional updates, so it never goes negative.

Decisions where the contract is silent:

- ``GET /products``: ``sort`` is ``newest`` (default), ``price``, ``-price``,
  ``name``, ``-name`` or ``rating`` (best average first, unrated last);
  ``in_stock=false`` lists sold-out products; archived products are never
  listed. ``q`` is a full-text prefix search (every word of ``q`` must begin a
  word of the name or description, in any order, ignoring case; see
  :mod:`inventory_service.models` for why not ``pg_trgm``).
- ``description`` is optional and may be empty (at most 5000 characters);
  names are trimmed, 1 to 200 characters. A new product's ``stock`` is 0 to
  1,000,000 (default 0); stock never exceeds 2,000,000,000 (409 ``stock_limit``).
- ``PATCH /products/{id}`` changes name, category, price, description and
  ``archived`` (``false`` restores a deleted product), never ``stock``: stock
  moves only through restock, deduct and reservations, so no update is lost.
- ``DELETE`` archives: the product is hidden (404) from everyone but admins,
  cannot be reserved, and keeps its reservations. Admins may still restock or
  deduct it, and releasing a reservation puts stock back on it.
- A product has at most one image (``PUT /products/{id}/image``, admins; the
  bytes as the body, at most 1 MiB; PNG, JPEG, WebP or a script-free SVG, told
  by the content). ``GET /products/{id}/image`` serves it to anyone with an
  ``ETag`` (304 for ``If-None-Match``), ``Cache-Control`` and a sandboxing CSP;
  an archived product's image is hidden like the product. See
  :mod:`inventory_service.images`.
- ``GET /products?ids=1,2,3`` reads up to 100 products at once (the cart's
  prices and stock in one call); unknown or archived ids are simply absent.
- A reservation is a header per sale (``sale_id`` is its key) with 1 to 50
  lines of distinct products, taken all or none (see
  :mod:`inventory_service.reservations`), kept forever as ``reserved``,
  ``released`` or ``returned``. A second reservation for a sale is 409
  ``already_reserved``, even after its release. A line's quantity is 1 to
  1000; the older one-line body (``product_id``, ``quantity``) keeps its
  former range of 1 to 1,000,000.
- Releasing (an unpaid sale) and returning (a cancelled, refunded order) ask
  the customers service first: a paid sale cannot be released (409
  ``reservation_sold``), stock is returned only once the refund exists (409
  ``not_refunded``). These two refusals are not stored under the
  ``Idempotency-Key`` (they reflect the money at the time of each call), nor
  is a 503. Releasing is idempotent by itself (a key is optional); returning
  requires a key. ``GET /internal/reservations[/{sale_id}]`` (service or
  admin) serve recovery and audits.
- Events (docs/events.rst): every stock change, new product and archive writes
  its event into the outbox in the change's transaction
  (:mod:`inventory_service.events`), published by the relay in each worker;
  ``/asyncapi.json`` describes them. Each worker is also a member of the
  ``inventory`` consumer group on the review stream, which keeps products'
  ``rating`` (:mod:`inventory_service.ratings`); ``sort=rating`` lists the
  best rated first.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from inventory_service.clients import build_payments_client
from inventory_service.metrics import METRICS
from inventory_service.models import INBOX, OUTBOX, SCHEMA
from inventory_service.ratings import GROUP, STREAMS, apply_review_events
from inventory_service.routes import internal_blp, products_blp
from shopkit.app import create_service_app
from shopkit.config import Settings
from shopkit.events import asyncapi
from shopkit.events.service_consumer import consumer_with_first_request
from shopkit.events.service_relay import relay_with_first_request


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the inventory service app (see :func:`shopkit.app.create_service_app`).

    Config ``INVENTORY_PAYMENTS`` replaces the client that asks customers about
    a sale's payments (unit tests: a fake at the HTTP boundary). The outbox
    relay and the ratings consumer start with a worker's first request when
    the broker's URL (``EVENTS_URL``) is set and the app is not ``TESTING``.
    """
    config = dict(config or {})
    settings: Settings = config.get("SETTINGS") or Settings.from_env("inventory")
    config["SETTINGS"] = settings
    payments = config.pop("INVENTORY_PAYMENTS", None) or build_payments_client(settings)
    app = create_service_app(
        service="inventory",
        import_name=__name__,
        package=__name__,
        schema=SCHEMA,
        title="Shop inventory service",
        description="Product catalogue with search, stock, and stock reservations for sales.",
        blueprints=[products_blp, internal_blp],
        metrics=METRICS,
        config=config,
    )
    app.extensions["inventory_payments"] = payments
    asyncapi.serve(
        app,
        asyncapi.build_document("inventory", "1.0.0", emits=["product"], consumes=["review"]),
    )
    relay_with_first_request(app, OUTBOX, "inventory")
    consumer_with_first_request(
        app,
        INBOX,
        service="inventory",
        group=GROUP,
        streams=STREAMS,
        batch_handler=apply_review_events,
    )
    return app
