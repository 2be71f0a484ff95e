"""Refuse NUL characters anywhere in a request before it reaches a view.

PostgreSQL text cannot hold ``\\x00``; without this guard a NUL in a query
parameter or a JSON string would surface as a database error (a 500) instead
of a clear 422.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request

from shopkit.errors import ValidationFailed


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def init_input_guard(app: Flask) -> None:
    """Answer 422 ``validation_error`` to requests whose path, query or JSON contains NUL."""

    @app.before_request
    def _refuse_nul() -> None:
        errors: dict[str, list[str]] = {}
        message = ["NUL characters are not allowed."]
        if "\x00" in request.path:
            errors["_path"] = message
        for name, value in request.args.items(multi=True):
            if "\x00" in name or "\x00" in value:
                errors[name.replace("\x00", "")] = message
        if request.is_json and request.content_length:
            body = request.get_json(silent=True)
            if _has_nul(body):
                errors["_body"] = message
        if errors:
            raise ValidationFailed(errors)
