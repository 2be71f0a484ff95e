"""``GET /healthz`` (process alive) and ``GET /readyz`` (database reachable, schema current)."""

from __future__ import annotations

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from shopkit.db import get_database
from shopkit.errors import problem_body, problem_response
from shopkit.migrations import current_revision, head_revision


def init_health(app: Flask, *, service: str, package: str, schema: str) -> None:
    """Register the health endpoints for ``service`` (migrations of ``package`` in ``schema``)."""
    expected = head_revision(package)

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        """Liveness: the process answers."""
        return jsonify(status="ok", service=service)

    @app.get("/readyz")
    def readyz() -> ResponseReturnValue:
        """Readiness: the database answers and its schema is at the newest migration."""
        try:
            with get_database().engine.connect() as connection:
                revision = current_revision(connection, schema)
        except SQLAlchemyError:
            body = problem_body(503, "not_ready", "The database is not reachable.")
            return problem_response(body, {"Retry-After": "2"})
        if revision != expected:
            body = problem_body(
                503,
                "not_ready",
                f"The database schema is at {revision}, expected {expected}: run "
                f"'flask --app {package} db upgrade'.",
            )
            return problem_response(body, {"Retry-After": "2"})
        return jsonify(status="ready", service=service, schema_revision=revision)
