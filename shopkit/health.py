"""``GET /healthz`` (process alive) and ``GET /readyz`` (database reachable, schema current).

Both answer within :data:`READY_BOUND_S` whatever the rest of the worker is
doing: the gunicorn worker (:mod:`shopkit.gunicorn_worker`) serves them on
threads of their own, and readiness asks the database on a connection of its
own, from a probe thread it waits for at most :data:`READY_BOUND_S`: a hung
database makes ``/readyz`` answer 503 ``not_ready`` at once, not hang.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError

from shopkit.db import connect_args, get_database
from shopkit.errors import problem_body, problem_response
from shopkit.migrations import current_revision, head_revision

#: ``/readyz`` answers within this many seconds.
READY_BOUND_S = 0.5


@dataclass
class _Outcome:
    revision: str | None = None
    error: str | None = None


class ReadinessProbe:
    """Reads the schema revision on its own one-connection pool, at most one probe at a time."""

    def __init__(self, url: str, schema: str, service: str) -> None:
        self.schema = schema
        self.engine = create_engine(
            url,
            pool_size=1,
            max_overflow=0,
            pool_timeout=READY_BOUND_S,
            pool_pre_ping=False,
            connect_args=connect_args(f"{service}-readyz", 1_000),
        )
        self._lock = threading.Lock()
        self._running: threading.Event | None = None
        self._outcome = _Outcome(error="not checked yet")

    def check(self) -> _Outcome:
        """The outcome of a probe started now (or of the one still running) within the bound."""
        with self._lock:
            running = self._running
            if running is None:
                running = self._running = threading.Event()
                threading.Thread(
                    target=self._probe, args=(running,), name="readyz", daemon=True
                ).start()
        if not running.wait(READY_BOUND_S):
            return _Outcome(error=f"the database did not answer within {READY_BOUND_S}s")
        return self._outcome

    def _probe(self, done: threading.Event) -> None:
        try:
            with self.engine.connect() as connection:
                outcome = _Outcome(revision=current_revision(connection, self.schema))
        except SQLAlchemyError as exc:
            outcome = _Outcome(error=type(exc.__cause__ or exc).__name__)
        with self._lock:
            self._outcome = outcome
            self._running = None
        done.set()


def init_health(app: Flask, *, service: str, package: str, schema: str) -> None:
    """Register the health endpoints for ``service`` (migrations of ``package`` in ``schema``)."""
    expected = head_revision(package)
    probe = ReadinessProbe(get_database_url(app), schema, service)
    app.extensions["shop_readiness"] = probe

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        """Liveness: the process answers."""
        return jsonify(status="ok", service=service)

    @app.get("/readyz")
    def readyz() -> ResponseReturnValue:
        """Readiness: the database answers and its schema is at the newest migration."""
        outcome = probe.check()
        if outcome.error is not None:
            body = problem_body(
                503, "not_ready", f"The database is not reachable ({outcome.error})."
            )
            return problem_response(body, {"Retry-After": "2"})
        if outcome.revision != expected:
            body = problem_body(
                503,
                "not_ready",
                f"The database schema is at {outcome.revision}, expected {expected}: run "
                f"'flask --app {package} db upgrade'.",
            )
            return problem_response(body, {"Retry-After": "2"})
        return jsonify(status="ready", service=service, schema_revision=outcome.revision)


def get_database_url(app: Flask) -> str:
    """The URL of ``app``'s database."""
    with app.app_context():
        return get_database().url
