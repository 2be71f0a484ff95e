"""One error shape everywhere: RFC 9457 problem details (``application/problem+json``).

Every error a service returns, whether raised by business code
(:class:`ProblemError`), by Flask/werkzeug (404, 405, ...), by request
validation (422) or by an unexpected exception (500), is rendered by
:func:`problem_response` with ``type``, ``title``, ``status``, ``detail``, a
machine-readable ``code``, the ``request_id`` and, for validation errors,
``errors`` per field.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, has_request_context, json, request
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from shopkit.problems import problem_spec
from shopkit.request_id import current_request_id

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://shop.example/problems/"

#: Default ``code`` for each HTTP status when nothing more specific is known.
DEFAULT_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    502: "bad_gateway",
    503: "dependency_unavailable",
    504: "dependency_timeout",
}


class ProblemError(Exception):
    """An error that becomes a problem+json response.

    Raise it from business code with the HTTP status, a machine-readable
    ``code`` and a human ``detail``; ``extra`` members are added to the body.
    The code must be declared in :data:`shopkit.problems.PROBLEMS` for that
    status (:class:`~shopkit.problems.UnregisteredProblem` otherwise), so the
    published documents name every code a service answers.
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        problem_spec(code, status)
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra

    def to_body(self) -> dict[str, Any]:
        """Return the problem document (without request-specific members)."""
        return problem_body(
            self.status, self.code, self.detail, title=self.title, errors=self.errors, **self.extra
        )


#: What a client should wait before retrying after a 503.
RETRY_AFTER_S = 2

#: SQLAlchemy errors that mean the database could not be used right now (unreachable,
#: restarting, frozen past a bound, a statement or lock wait timed out, the pool empty).
DATABASE_DOWN_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
)


class DatabaseUnavailable(ProblemError):
    """503 ``database_unavailable``: the database could not be reached in time; retry."""

    def __init__(
        self, detail: str = "The database is unavailable; try again shortly.", **extra: Any
    ) -> None:
        super().__init__(
            503,
            "database_unavailable",
            detail,
            headers={"Retry-After": str(RETRY_AFTER_S)},
            **extra,
        )


class NotFound(ProblemError):
    """404 ``not_found``: the resource does not exist (or is hidden from the caller)."""

    def __init__(self, detail: str = "The resource was not found.", **extra: Any) -> None:
        super().__init__(404, "not_found", detail, **extra)


class Conflict(ProblemError):
    """409 with a specific ``code`` (``insufficient_funds``, ``already_exists``, ...)."""

    def __init__(self, code: str, detail: str, **extra: Any) -> None:
        super().__init__(409, code, detail, **extra)


class Forbidden(ProblemError):
    """403 ``forbidden``: authenticated, but the role or owner does not allow it."""

    def __init__(self, detail: str = "You are not allowed to do this.", **extra: Any) -> None:
        super().__init__(403, "forbidden", detail, **extra)


class Unauthorized(ProblemError):
    """401: no valid bearer token."""

    def __init__(
        self, detail: str = "A valid bearer token is required.", code: str = "unauthorized"
    ) -> None:
        super().__init__(401, code, detail, headers={"WWW-Authenticate": 'Bearer realm="shop"'})


class ValidationFailed(ProblemError):
    """422 ``validation_error`` with per-field ``errors``."""

    def __init__(self, errors: dict[str, Any], detail: str = "The request is not valid.") -> None:
        super().__init__(422, "validation_error", detail, errors=errors)


def problem_body(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    errors: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build a problem document as a plain dict."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """Render a problem document, adding ``instance`` and ``request_id``."""
    body = dict(body)
    if has_request_context():
        body.setdefault("instance", request.path)
    request_id = current_request_id()
    if request_id:
        body.setdefault("request_id", request_id)
    response = Response(json.dumps(body), status=body["status"], mimetype=PROBLEM_MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _flatten_messages(messages: Any) -> dict[str, Any]:
    """Turn webargs' ``{location: {field: [...]}}`` into ``{field: [...]}``."""
    if not isinstance(messages, dict):
        return {"_schema": messages if isinstance(messages, list) else [str(messages)]}
    flat: dict[str, Any] = {}
    for fields in messages.values():
        if isinstance(fields, dict):
            flat.update(fields)
        else:
            flat.setdefault("_schema", [])
            flat["_schema"].extend(fields if isinstance(fields, list) else [fields])
    return flat


def http_exception_to_problem(error: HTTPException) -> tuple[dict[str, Any], dict[str, str]]:
    """Map a werkzeug/webargs HTTP exception to a problem body and headers."""
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    headers = dict(data.get("headers") or {})
    if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
        headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
    code = DEFAULT_CODES.get(status, "http_error")
    detail = error.description or HTTPStatus(status).description
    errors = None
    if messages is not None:
        if status == 400 and messages == {"json": ["Invalid JSON body."]}:
            code, detail = "malformed_json", "The request body is not valid JSON."
        else:
            errors = _flatten_messages(messages)
            detail = "The request is not valid: see errors."
    body = problem_body(status, code, detail, errors=errors)
    return body, headers


def register_error_handlers(app: Flask) -> None:
    """Make every error of ``app`` a problem+json response (never an HTML page)."""

    @app.errorhandler(ProblemError)
    def _problem(error: ProblemError) -> Response:
        return problem_response(error.to_body(), error.headers)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        if (error.code or 500) >= 500:
            log.error("server error: %s", error, exc_info=error.__cause__ or error)
        body, headers = http_exception_to_problem(error)
        return problem_response(body, headers)

    @app.errorhandler(sa_exc.SQLAlchemyError)
    def _database(error: sa_exc.SQLAlchemyError) -> Response:
        if not isinstance(error, DATABASE_DOWN_ERRORS):
            return _unexpected(error)
        log.warning("database unavailable: %s", type(error.__cause__ or error).__name__)
        problem = DatabaseUnavailable()
        return problem_response(problem.to_body(), problem.headers)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        body = problem_body(500, "internal_error", "An unexpected error occurred.")
        return problem_response(body)
