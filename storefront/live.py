"""The live order stream a shopper's order pages listen to (``GET /live/orders``).

The view decides who the stream is for, as any page does: the session cookie
(encrypted, and refused once logged out), the access token renewed when it is
about to expire, the customer id from its claims. It then answers ``200
text/event-stream`` and hands the connection over to the process's
:class:`~storefront.livehub.LiveHub`, which writes that customer's order
events to it; no thread waits on an open page.

Where live updates cannot be had the view answers ``204 No Content``, which
tells an ``EventSource`` to stop reconnecting: no broker configured
(``EVENTS_URL`` unset), a server that cannot hand connections over (anything
but the storefront's gunicorn worker, e.g. Flask's test client), or a hub
that holds all the streams it may. The pages work the same without it; they
only stop updating by themselves. Logged out: ``401``. An admin has no orders
of their own: ``403``.
"""

from __future__ import annotations

import random
import time
from typing import Any

from flask import Blueprint, Response, current_app, request, session
from flask.typing import ResponseReturnValue

from shopkit.gunicorn_worker import HANDOVER_ENVIRON, Handover
from storefront.cookie import SID
from storefront.livehub import RECONNECT_MS, LiveHub, Subscription, parse_id
from storefront.session import (
    RENEW_BEFORE_S,
    LoginRequired,
    current_user,
    shopper_required,
    token,
    token_expires_at,
)

bp = Blueprint("live", __name__)

#: A stream lasts at most this long (seconds), then the browser reconnects through the view.
MAX_STREAM_S = 600
#: ``since`` (when a page was rendered) is taken this much earlier: the broker's and the
#: storefront's clocks may differ a little, and an event replayed twice only reloads a
#: fragment once more.
SINCE_MARGIN_MS = 2000
#: A stream ends up to this share of its span early, and the browser waits up to
#: :data:`RECONNECT_JITTER_MS` more than :data:`RECONNECT_MS` to reconnect: a shopper's tabs
#: (and everyone's, after a restart) do not all come back on the same tick.
STREAM_JITTER = 0.25
RECONNECT_JITTER_MS = 2000


def hub() -> LiveHub | None:
    """The process's hub, or ``None`` when there is no broker to follow."""
    return current_app.extensions.get("shop_live")


def _after() -> tuple[int, int] | None:
    """Where to replay from: the browser's ``Last-Event-ID`` on a reconnect, else the page's
    ``since`` (milliseconds since the epoch when it was rendered), less a margin."""
    last = request.headers.get("Last-Event-ID", "").strip()
    if last:
        return parse_id(last)
    since = request.args.get("since", "")
    if since.isdigit() and len(since) <= 15:
        return max(0, int(since) - SINCE_MARGIN_MS), 0
    return None


def _stream_end() -> float:
    """A little before the session's access token must be renewed, at most
    :data:`MAX_STREAM_S` away, less a random share (:data:`STREAM_JITTER`)."""
    now = time.time()
    span = min(MAX_STREAM_S, token_expires_at() - RENEW_BEFORE_S - now)
    return now + max(30.0, span * (1 - random.uniform(0, STREAM_JITTER)))  # noqa: S311 (jitter)


def no_stream() -> Response:
    """``204``: no live updates here (an ``EventSource`` stops trying)."""
    return Response(status=204)


def _plain(status: int, message: str) -> Response:
    """A refusal an ``EventSource`` reads as one (it only looks at the status)."""
    return Response(message + "\n", status, mimetype="text/plain")


@bp.get("/live/orders")
@shopper_required(refuse=_plain)
def orders() -> ResponseReturnValue:
    """The shopper's order events as server-sent events (``?order=<id>`` for one order)."""
    try:
        token()  # renewed if about to expire: the stream lasts until just before the next
    except LoginRequired:
        return _plain(401, "Your session has ended.")
    user = current_user()
    customer_id = user.customer_id if user is not None else None
    if customer_id is None:
        return _plain(403, "This account has no orders to follow.")
    live = hub()
    handover: Handover | None = request.environ.get(HANDOVER_ENVIRON)
    if live is None or handover is None or not live.has_room(customer_id):
        return no_stream()
    order = request.args.get("order") or None
    subscription = Subscription(
        customer_id=customer_id,
        session_id=str(session.get(SID)) if session.get(SID) is not None else None,
        order_id=order[:64] if order else None,
        after=_after(),
        until=_stream_end(),
    )

    def receive(sock: Any, head: bytes) -> None:
        live.adopt(sock, head, subscription)

    handover.take(receive)
    retry = RECONNECT_MS + random.randint(0, RECONNECT_JITTER_MS)  # noqa: S311 (jitter)
    response = Response(f"retry: {retry}\n\n", 200, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response
