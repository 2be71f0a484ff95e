"""The shopper's inbox: their notifications from the notifications service.

The notifications service makes them from order and wallet events and lists
only the caller's own (``GET /notifications`` with the shopper's token, like
every call the storefront makes for a shopper). The menu's unread count is
loaded by htmx after the page (``GET /inbox/count``), so a slow or absent
notifications service never delays a page: without it the menu just shows
no count.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from shopkit.service_client import DependencyUnavailable
from storefront.clients import ApiProblem
from storefront.forms import ActionForm
from storefront.session import (
    LoginRequired,
    api,
    attempt,
    current_user,
    page_number,
    past_the_end,
    shopper_required,
    token,
)

bp = Blueprint("inbox", __name__)

#: Notifications per inbox page.
PAGE_SIZE = 20


@bp.get("/inbox")
@shopper_required
def inbox() -> ResponseReturnValue:
    """The shopper's notifications, newest first (``?unread=1``: unread only)."""
    unread_only = request.args.get("unread") == "1"
    page, unread = api().notifications(
        token(), page=page_number(), page_size=PAGE_SIZE, unread=unread_only
    )
    if (last := past_the_end(page)) is not None:
        return redirect(url_for("inbox.inbox", page=last, unread="1" if unread_only else None))
    return render_template(
        "shop/inbox.html", page=page, unread=unread, unread_only=unread_only, form=ActionForm()
    )


@bp.post("/inbox/<int:notification_id>/read")
@shopper_required
def read(notification_id: int) -> ResponseReturnValue:
    """Mark one notification read."""
    form = ActionForm()
    if form.validate():
        attempt(lambda: api().read_notification(token(), notification_id), "Marked as read.")
    else:
        flash("The form expired; please try again.", "error")
    return redirect(_back())


@bp.post("/inbox/read")
@shopper_required
def read_all() -> ResponseReturnValue:
    """Mark every notification read."""
    form = ActionForm()
    if form.validate():
        attempt(lambda: api().read_all_notifications(token()), "All marked as read.")
    else:
        flash("The form expired; please try again.", "error")
    return redirect(_back())


def _back() -> str:
    """The inbox page the form was on (its page number and filter kept)."""
    unread = "1" if request.args.get("unread") == "1" else None
    return url_for("inbox.inbox", page=page_number(), unread=unread)


@bp.get("/inbox/count")
def count() -> ResponseReturnValue:
    """The menu's unread count as a fragment (empty when there is none, or no answer)."""
    user = current_user()
    if user is None or user.is_admin:
        return ""
    try:
        _, unread = api().notifications(token(), page_size=1, unread=True)
    except (ApiProblem, DependencyUnavailable, LoginRequired):
        return ""
    return render_template("shop/_inbox_count.html", unread=unread)
