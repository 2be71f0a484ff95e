"""The reviews service (:5003): verified-buyer reviews with moderation.

A customer may review a product once, and only after a paid order of it
(completed, shipped or delivered; not failed or cancelled): inventory confirms
the product exists, and reviews' own verified purchases, learned from order
events by its consumer group (:mod:`reviews_service.purchases`), confirm the
purchase; sales is not called. New and edited reviews wait as ``pending``
until an admin approves them; only approved reviews are public. Each
product's approved reviews come with a summary (count, average, histogram).
Every change of a review writes its event into the reviews outbox
(:mod:`reviews_service.events`).
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from reviews_service import purchases
from reviews_service.clients import ReviewsClients, build_clients
from reviews_service.models import INBOX, OUTBOX, SCHEMA
from reviews_service.routes import admin_blp, moderation_blp, reviews_blp
from shopkit.app import create_service_app
from shopkit.config import Settings
from shopkit.events import asyncapi
from shopkit.events.service_consumer import consumer_with_first_request
from shopkit.events.service_relay import relay_with_first_request


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the reviews service app (see :func:`shopkit.app.create_service_app`).

    Besides ``SETTINGS`` and ``KEY_RESOLVER``, ``config`` may hold
    ``REVIEWS_CLIENTS``: a :class:`~reviews_service.clients.ReviewsClients` to
    use instead of the real HTTP client (tests give a fake). When the broker's
    URL (``EVENTS_URL``) is set and the app is not ``TESTING``, each worker runs
    the outbox relay and a member of the ``reviews`` consumer group of the order
    stream, both started by its first request.
    """
    config = dict(config or {})
    settings: Settings = config.get("SETTINGS") or Settings.from_env("reviews")
    config["SETTINGS"] = settings
    clients: ReviewsClients | None = config.pop("REVIEWS_CLIENTS", None)
    app = create_service_app(
        service="reviews",
        import_name=__name__,
        package=__name__,
        schema=SCHEMA,
        title="Shop reviews service",
        description="Verified-buyer product reviews with moderation and rating summaries.",
        blueprints=[reviews_blp, moderation_blp, admin_blp],
        config=config,
    )
    app.extensions["reviews_clients"] = clients or build_clients(settings)
    asyncapi.serve(
        app, asyncapi.build_document("reviews", "1.0.0", emits=["review"], consumes=["order"])
    )
    relay_with_first_request(app, OUTBOX, "reviews")
    consumer_with_first_request(
        app,
        INBOX,
        service="reviews",
        group=purchases.GROUP,
        streams=purchases.STREAMS,
        batch_handler=purchases.apply_order_events,
    )
    return app
