"""HTTP routes of the notifications service: the caller's own notifications only."""

from __future__ import annotations

from typing import Any

from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint

from notifications_service import notifications
from notifications_service.models import Notification
from notifications_service.schemas import (
    MarkedSchema,
    NotificationListArgsSchema,
    NotificationPageSchema,
    NotificationSchema,
)
from shopkit.auth import ROLE_CUSTOMER, require_principal, requires
from shopkit.db import get_session
from shopkit.errors import Forbidden

notifications_blp = Blueprint(
    "notifications", __name__, description="Each customer's notifications about orders and wallet."
)


def _customer_id() -> int:
    principal = require_principal()
    if principal.customer_id is None:
        raise Forbidden("Only customers have notifications.")
    return principal.customer_id


@notifications_blp.route("/notifications", methods=["GET"])
@notifications_blp.response(200, NotificationPageSchema)
@requires(ROLE_CUSTOMER)
@notifications_blp.arguments(NotificationListArgsSchema(), location="query")
def list_notifications(args: dict[str, Any]) -> ResponseReturnValue:
    """Your notifications, newest first, with your unread count."""
    return notifications.list_for(
        get_session(), _customer_id(), args["page"], args["page_size"], unread=args["unread"]
    )


@notifications_blp.route("/notifications/<int:notification_id>/read", methods=["POST"])
@notifications_blp.response(200, NotificationSchema)
@notifications_blp.alt_response(404, description="Not one of your notifications.")
@requires(ROLE_CUSTOMER)
def read_notification(notification_id: int) -> Notification:
    """Mark one of your notifications read (again is fine)."""
    return notifications.mark_read(get_session(), _customer_id(), notification_id)


@notifications_blp.route("/notifications/read", methods=["POST"])
@notifications_blp.response(200, MarkedSchema)
@requires(ROLE_CUSTOMER)
def read_all() -> ResponseReturnValue:
    """Mark all your notifications read."""
    return {"marked": notifications.mark_all_read(get_session(), _customer_id())}


__all__ = ["notifications_blp"]
