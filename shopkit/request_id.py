"""``X-Request-ID``: accepted or generated per request, echoed, propagated and logged.

The id lives in a context variable so that log lines and outgoing HTTP calls
made while serving a request carry it without being handed it explicitly.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from flask import Flask, Response, request

HEADER = "X-Request-ID"
_VALID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    """Return the id of the request being served (or set by :func:`bind_request_id`)."""
    return _request_id.get()


def bind_request_id(value: str | None) -> None:
    """Set the current request id, e.g. in a background job that acts for a request."""
    _request_id.set(value)


def valid_request_id(value: str) -> bool:
    """True if a client's ``X-Request-ID`` may be used as is (1-128 safe characters)."""
    return _VALID.fullmatch(value) is not None


def new_request_id() -> str:
    """Return a fresh random request id."""
    return uuid.uuid4().hex


def init_request_id(app: Flask) -> None:
    """Take ``X-Request-ID`` from each request (or make one) and echo it in the response."""

    @app.before_request
    def _bind() -> None:
        incoming = request.headers.get(HEADER, "")
        _request_id.set(incoming if valid_request_id(incoming) else new_request_id())

    @app.after_request
    def _echo(response: Response) -> Response:
        value = current_request_id()
        if value:
            response.headers[HEADER] = value
        return response

    @app.teardown_request
    def _unbind(_exc: BaseException | None) -> None:
        _request_id.set(None)
