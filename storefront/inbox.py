"""The shopper's inbox: their notifications from the notifications service.

The notifications service makes them from order and wallet events and lists
only the caller's own (``GET /notifications`` with the shopper's token, like
every call the storefront makes for a shopper). The menu's unread count is
loaded by htmx after the page (``GET /inbox/count``: one quick attempt), so a
slow or absent notifications service never delays a page: without it the menu
just shows no count. The count is kept in the session for
:data:`COUNT_KEEP_S` seconds, and the pages of that time show it at once
instead of asking again; marking read forgets it, and an order's change (a
live page's ``shop-order``) asks again.
"""

from __future__ import annotations

import time

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
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
#: Seconds the menu's unread count is kept in the session.
COUNT_KEEP_S = 30.0
#: The session's key of the kept count (``[count, time.time()]``).
UNREAD = "inbox_unread"


def known_unread() -> int | None:
    """The session's unread count while it is fresh, else ``None`` (the page asks)."""
    kept = session.get(UNREAD)
    if not isinstance(kept, list) or len(kept) != 2:
        return None
    count, at = kept
    fresh = isinstance(count, int) and 0 <= time.time() - float(at) < COUNT_KEEP_S
    return count if fresh else None


def _keep_unread(count: int) -> None:
    session[UNREAD] = [count, time.time()]


def _forget_unread() -> None:
    session.pop(UNREAD, None)


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
    _keep_unread(unread)  # the menu shows it without asking again
    return render_template(
        "shop/inbox.html", page=page, unread=unread, unread_only=unread_only, form=ActionForm()
    )


@bp.post("/inbox/<int:notification_id>/read")
@shopper_required
def read(notification_id: int) -> ResponseReturnValue:
    """Mark one notification read."""
    form = ActionForm()
    if form.validate():
        _forget_unread()
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
        _forget_unread()
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
    """The menu's unread count as a fragment, asked anew and kept (empty when there is none,
    or no quick answer)."""
    user = current_user()
    if user is None or user.is_admin:
        return ""
    try:
        unread = api().unread_count(token())
    except (ApiProblem, DependencyUnavailable, LoginRequired):
        _forget_unread()
        return ""
    _keep_unread(unread)
    return render_template("shop/_inbox_count.html", unread=unread)
