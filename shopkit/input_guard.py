"""Refuse requests no view should see, before they reach one.

* Text PostgreSQL cannot store: ``\\x00``, or a lone UTF-16 surrogate (JSON
  ``"\\ud800"``), anywhere in the path, query or JSON body: 422.
* JSON nested deeper than :data:`MAX_JSON_DEPTH` (no Shop body needs more than
  a few levels): 400 ``too_deeply_nested``. Walking it is iterative, so no
  nesting can exhaust the stack.
* A JSON body Python cannot read, e.g. an integer of thousands of digits
  (beyond ``sys.get_int_max_str_digits``): 400 ``malformed_json``.
* ``PATCH`` without a JSON object holding at least one field: 422 (a partial
  update that changes nothing is a client's mistake, not a success).
* A ``POST``, ``PUT`` or ``PATCH`` with a body that is not declared JSON
  (``Content-Type: application/json`` or ``application/*+json``): 415
  ``unsupported_media_type``, rather than "missing field" errors about a
  body the service never read. A view marked :func:`raw_body` (an image
  upload) reads its bytes itself.

Each is a 4xx problem with a one-line access log, never a 500 with a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, request

from shopkit.errors import ProblemError, ValidationFailed

V = TypeVar("V", bound=Callable[..., Any])

#: The deepest JSON body accepted (objects and arrays count one level each).
MAX_JSON_DEPTH = 32


def _unstorable(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return True
    return False


def _check_body(body: Any) -> bool:
    """Walk ``body`` without recursion: 400 if too deep; True if it holds unstorable text."""
    unstorable = False
    pending: list[tuple[Any, int]] = [(body, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            unstorable = unstorable or _unstorable(value)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            raise ProblemError(
                400,
                "too_deeply_nested",
                f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.",
            )
        if isinstance(value, dict):
            unstorable = unstorable or any(_unstorable(k) for k in value)
            pending.extend((v, depth + 1) for v in value.values())
        else:
            pending.extend((v, depth + 1) for v in value)
    return unstorable


def _json_body() -> Any:
    """The request's JSON body (``None`` if it has none); 400 if Python cannot read it."""
    if not request.is_json:  # with or without Content-Length (chunked bodies too)
        return None
    data = request.get_data(cache=True)
    if not data:
        return None
    try:
        return json.loads(data)
    except RecursionError:
        raise ProblemError(
            400, "too_deeply_nested", "The JSON body is nested too deeply."
        ) from None
    except ValueError:  # not JSON, not UTF-8, or an integer too long to convert
        raise ProblemError(400, "malformed_json", "The request body is not valid JSON.") from None


#: Methods whose body the services read as JSON.
BODY_METHODS = {"POST", "PUT", "PATCH"}
#: The bodies of HTML forms (accepted with ``init_input_guard(forms=True)``).
FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}


def _check_form() -> None:
    """422 for unstorable text in the path, the query or a form field of a form post."""
    fields = [*request.args.items(multi=True), *request.form.items(multi=True)]
    if _unstorable(request.path) or any(_unstorable(k) or _unstorable(v) for k, v in fields):
        message = "NUL characters and lone surrogates are not allowed."
        raise ValidationFailed({"_form": [message]}, detail=message)


def raw_body(view: V) -> V:
    """Mark a view that reads its body as bytes (an image): the JSON-only check skips it.

    Put it directly under the route decorator, so the view the app registers carries it.
    """
    view.reads_raw_body = True  # type: ignore[attr-defined]
    return view


def _reads_raw_body(app: Flask) -> bool:
    view = app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, "reads_raw_body", False))


def _has_body() -> bool:
    """Whether the request carries a body (a length above zero, or a chunked one)."""
    if request.content_length:
        return True
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def init_input_guard(app: Flask, *, forms: bool = False) -> None:
    """Refuse unstorable text, deep or unreadable JSON and empty PATCHes (see the module).

    ``forms``: the app takes HTML form posts (the storefront): a form body is
    accepted, and its fields are checked for unstorable text like the query.
    """

    @app.before_request
    def _guard() -> None:
        if forms and request.mimetype in FORM_TYPES:
            _check_form()
            return
        if (
            _has_body()
            and not request.is_json
            and request.method in BODY_METHODS
            and not _reads_raw_body(app)
        ):
            raise ProblemError(
                415,
                "unsupported_media_type",
                "Send the request body as JSON, with Content-Type: application/json.",
            )
        errors: dict[str, list[str]] = {}
        message = ["NUL characters and lone surrogates are not allowed."]
        if _unstorable(request.path):
            errors["_path"] = message
        for name, value in request.args.items(multi=True):
            if _unstorable(name) or _unstorable(value):
                errors["_query"] = message
        body = _json_body()
        if _check_body(body):
            errors["_body"] = message
        if errors:
            raise ValidationFailed(errors)
        if request.method == "PATCH" and not (isinstance(body, dict) and body):
            raise ValidationFailed(
                {"_schema": ["Send a JSON object with at least one field to change."]},
                detail="Nothing to change.",
            )
