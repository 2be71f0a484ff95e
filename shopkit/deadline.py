"""One overall deadline per request, shared by its outgoing calls and database statements.

Each request gets a deadline when it starts (``REQUEST_DEADLINE``, 8 s by
default, so that an answer comes within the documented 10 s bound). The
deadline lives in a context variable: :class:`~shopkit.service_client.ServiceClient`
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
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from flask import Flask, request

#: The header that carries the caller's remaining budget, in milliseconds.
HEADER = "X-Request-Deadline-Ms"
#: The default budget of one request, in seconds (``REQUEST_DEADLINE``).
DEFAULT_BUDGET_S = 8.0

_deadline: ContextVar[float | None] = ContextVar("request_deadline", default=None)


def current_deadline() -> float | None:
    """The ``time.monotonic()`` instant the current work must finish by, if any."""
    return _deadline.get()


def remaining(default: float | None = None) -> float | None:
    """Seconds left before the current deadline (may be negative), or ``default`` if none."""
    deadline = _deadline.get()
    return default if deadline is None else deadline - time.monotonic()


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


def init_deadline(app: Flask, budget_s: float = DEFAULT_BUDGET_S) -> None:
    """Give each request of ``app`` its deadline: ``budget_s``, or the caller's if shorter."""

    @app.before_request
    def _start() -> None:
        caller = _caller_budget()
        set_deadline(budget_s if caller is None else min(budget_s, caller))

    @app.teardown_request
    def _clear(_exc: BaseException | None) -> None:
        set_deadline(None)
