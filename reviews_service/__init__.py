"""The reviews service (:5003): verified-buyer reviews with moderation.

A customer may review a product once, and only after a paid order of it
(completed, shipped or delivered; not failed or cancelled): inventory confirms
the product exists and sales confirms the purchase
(see :mod:`reviews_service.clients`). New and edited reviews wait as
``pending`` until an admin approves them; only approved reviews are public.
Each product's approved reviews come with a summary (count, average,
histogram).
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from reviews_service.clients import ReviewsClients, build_clients
from reviews_service.models import SCHEMA
from reviews_service.routes import moderation_blp, reviews_blp
from shopkit.app import create_service_app
from shopkit.config import Settings


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the reviews service app (see :func:`shopkit.app.create_service_app`).

    Besides ``SETTINGS`` and ``KEY_RESOLVER``, ``config`` may hold
    ``REVIEWS_CLIENTS``: a :class:`~reviews_service.clients.ReviewsClients` to
    use instead of the real HTTP clients (tests give fakes).
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
        blueprints=[reviews_blp, moderation_blp],
        config=config,
    )
    app.extensions["reviews_clients"] = clients or build_clients(settings)
    return app
