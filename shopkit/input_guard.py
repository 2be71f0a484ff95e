"""Refuse text PostgreSQL cannot store, anywhere in a request, before it reaches a view.

PostgreSQL text cannot hold ``\\x00``, and UTF-8 cannot encode a lone UTF-16
surrogate (JSON ``"\\ud800"``). Without this guard either would surface as a
database or encoding error (a 500) instead of a clear 422.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request

from shopkit.errors import ValidationFailed


def _unstorable(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return True
    return False


def _has_unstorable(value: Any) -> bool:
    if isinstance(value, str):
        return _unstorable(value)
    if isinstance(value, dict):
        return any(_has_unstorable(k) or _has_unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_unstorable(v) for v in value)
    return False


def init_input_guard(app: Flask) -> None:
    """Answer 422 ``validation_error`` when the path, query or JSON holds unstorable text."""

    @app.before_request
    def _refuse_nul() -> None:
        errors: dict[str, list[str]] = {}
        message = ["NUL characters and lone surrogates are not allowed."]
        if _unstorable(request.path):
            errors["_path"] = message
        for name, value in request.args.items(multi=True):
            if _unstorable(name) or _unstorable(value):
                errors["_query"] = message
        if request.is_json:  # with or without Content-Length (chunked bodies too)
            body = request.get_json(silent=True)
            if _has_unstorable(body):
                errors["_body"] = message
        if errors:
            raise ValidationFailed(errors)
