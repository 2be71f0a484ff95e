"""The notifications service (:5004): each customer's notifications, made from events.

A consumer group (:mod:`notifications_service.worker`) reads the order and
wallet streams and turns each event into one notification for the customer
it concerns (:func:`notifications_service.notifications.apply_events`),
exactly once however often an event is delivered; from the customer stream it
keeps each customer's contact, to which their mails go. The HTTP API lets a
customer list their own notifications and mark them read.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from notifications_service.models import SCHEMA, inbox
from notifications_service.notifications import GROUP, STREAMS, effects_of
from notifications_service.routes import notifications_blp
from shopkit.app import create_service_app
from shopkit.events import asyncapi
from shopkit.events.admin_routes import init_events_admin
from shopkit.events.catalog import EVENT_TYPES


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the notifications service app (see :func:`shopkit.app.create_service_app`)."""
    app = create_service_app(
        service="notifications",
        import_name=__name__,
        package=__name__,
        schema=SCHEMA,
        title="Shop notifications service",
        description="Each customer's notifications about their orders and wallet.",
        blueprints=[notifications_blp],
        config=config,
    )
    consumed = {t.aggregate for t in EVENT_TYPES if t.stream in STREAMS}
    asyncapi.serve(app, asyncapi.build_document("notifications", "1.0.0", consumes=consumed))
    init_events_admin(app, inbox=inbox, groups={GROUP: STREAMS}, effects=effects_of)
    return app
