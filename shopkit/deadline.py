"""One overall deadline per request, shared by its outgoing calls and database statements.

Each request gets a deadline counted from the moment it reached the server
(``REQUEST_DEADLINE``, 8 s by default, so that an answer comes within the
documented 10 s bound: a last database round trip may run half a second past the
deadline, see :mod:`shopkit.db_guard`): the gunicorn worker notes when a
request arrived (:mod:`shopkit.gunicorn_worker`, :data:`ARRIVAL_ENVIRON`), so
time spent queued for a free thread counts against the budget, and it answers
a request still queued when its budget runs out itself, at once. Behind the gateway the
start is the gateway's ``X-Request-Start`` when that is earlier; the header is
read only from a trusted proxy (``TRUSTED_PROXIES``) and can only shorten the
budget, never extend it. A request that has already waited past its budget is
answered 503 ``request_expired`` with ``Retry-After`` before any work starts.
The deadline lives in a context variable: :class:`~shopkit.service_client.ServiceClient`
never waits past it and sends what is left to the callee in
:data:`HEADER` (milliseconds, like gRPC's ``grpc-timeout``), and the
database guard (:mod:`shopkit.db_guard`) cuts a statement that would outlive
it. A callee takes the smaller of its own budget and the caller's.

Work outside a request (recovery passes, CLI commands) has no deadline
unless it opens one with :func:`deadline_scope`; the per-call and
per-statement bounds still apply there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from flask import Flask, request

from shopkit.errors import ProblemError
from shopkit.proxy import Network, is_trusted

#: The header that carries the caller's remaining budget, in milliseconds.
HEADER = "X-Request-Deadline-Ms"
#: The gateway's header: when it received the request, ``t=<seconds since the epoch>``.
START_HEADER = "X-Request-Start"
#: The WSGI environ key where the server notes the request's arrival (``time.monotonic()``).
ARRIVAL_ENVIRON = "shop.arrived_at"
#: Seconds a client asked to wait before retrying a request that expired in the queue.
RETRY_AFTER_S = 1
#: The default budget of one request, in seconds (``REQUEST_DEADLINE``).
DEFAULT_BUDGET_S = 8.0

_deadline: ContextVar[float | None] = ContextVar("request_deadline", default=None)
#: The budget the last :func:`init_deadline` gave (a server process serves one app).
_app_budget_s: list[float] = []


def current_deadline() -> float | None:
    """The ``time.monotonic()`` instant the current work must finish by, if any."""
    return _deadline.get()


def remaining(default: float | None = None) -> float | None:
    """Seconds left before the current deadline (may be negative), or ``default`` if none."""
    deadline = _deadline.get()
    return default if deadline is None else deadline - time.monotonic()


def app_budget_s() -> float:
    """The budget :func:`init_deadline` gave this process's app (seconds), or
    :data:`DEFAULT_BUDGET_S` before it ran; for the server, which answers requests that
    waited it out before the app sees them."""
    return _app_budget_s[-1] if _app_budget_s else DEFAULT_BUDGET_S


def bounded(seconds: float) -> float:
    """``seconds``, shortened to what is left of the current deadline (never below 0)."""
    left = remaining()
    return seconds if left is None else max(0.0, min(seconds, left))


def expired() -> bool:
    """True when the current deadline has passed."""
    left = remaining()
    return left is not None and left <= 0


def set_deadline(budget_s: float | None) -> None:
    """Start (or, with ``None``, clear) a deadline ``budget_s`` from now for this context."""
    _deadline.set(None if budget_s is None else time.monotonic() + budget_s)


@contextmanager
def deadline_scope(budget_s: float) -> Iterator[None]:
    """Run a block under a deadline ``budget_s`` from now (or the enclosing one, if sooner)."""
    new = time.monotonic() + budget_s
    outer = _deadline.get()
    token = _deadline.set(new if outer is None else min(outer, new))
    try:
        yield
    finally:
        _deadline.reset(token)


def outgoing_header() -> dict[str, str]:
    """The :data:`HEADER` to send with an outgoing call (empty without a deadline)."""
    left = remaining()
    if left is None:
        return {}
    return {HEADER: str(max(1, int(left * 1000)))}


def _caller_budget() -> float | None:
    raw = request.headers.get(HEADER, "")
    if not raw.isdigit():
        return None
    return int(raw) / 1000


def gateway_start(raw: str, now: float, wall_now: float) -> float | None:
    """The ``time.monotonic()`` instant an ``X-Request-Start`` value names, or ``None``.

    Accepts nginx's ``t=<seconds>.<millis>`` (or the bare number). A value in
    the future (clocks apart) or that is not a number names nothing.
    """
    value = raw.strip().removeprefix("t=")
    try:
        started = float(value)
    except ValueError:
        return None
    age = wall_now - started
    if not 0 <= age < wall_now:  # in the future, or NaN
        return None
    return now - age


def request_start(now: float, trusted_proxies: Sequence[Network] = ()) -> float:
    """When the current request reached the server (``time.monotonic()``), never after ``now``.

    The worker's note of the arrival, or the gateway's ``X-Request-Start`` if
    earlier and sent by a trusted proxy; a header can only move the start
    earlier, so it can shorten a request's budget but never extend it.
    """
    start = now
    arrived = request.environ.get(ARRIVAL_ENVIRON)
    if isinstance(arrived, float):
        start = min(start, arrived)
    raw = request.headers.get(START_HEADER)
    if raw and trusted_proxies and is_trusted(request.remote_addr or "", trusted_proxies):
        gateway = gateway_start(raw, now, time.time())
        if gateway is not None:
            start = min(start, gateway)
    return start


class RequestExpired(ProblemError):
    """503 ``request_expired``: the request waited its whole budget before it could start."""

    def __init__(self, waited_s: float) -> None:
        super().__init__(
            503,
            "request_expired",
            f"The request waited {waited_s:.1f} s for the server and its time ran out "
            "before it could start; nothing was done. Retry shortly.",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )


def init_deadline(
    app: Flask, budget_s: float = DEFAULT_BUDGET_S, trusted_proxies: Sequence[Network] = ()
) -> None:
    """Give each request of ``app`` its deadline, counted from its arrival (:func:`request_start`).

    The budget is ``budget_s``, or the caller's if shorter. A request whose
    deadline has already passed is refused with :class:`RequestExpired`
    before any later hook or the view runs. The server's worker reads the budget
    (:func:`app_budget_s`) to answer requests that wait it out for a thread.
    """
    _app_budget_s[:] = [budget_s]

    @app.before_request
    def _start() -> None:
        now = time.monotonic()
        start = request_start(now, trusted_proxies)
        caller = _caller_budget()
        until = start + (budget_s if caller is None else min(budget_s, caller))
        _deadline.set(until)
        if until <= now:
            raise RequestExpired(now - start)

    @app.teardown_request
    def _clear(_exc: BaseException | None) -> None:
        set_deadline(None)
