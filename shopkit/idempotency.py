"""The idempotency-key store (ARCHITECTURE §7).

Each service has an ``idempotency_keys`` table in its own schema (a model
built from :class:`IdempotencyKeyMixin`). :func:`run_idempotent` performs a
state-changing operation at most once per ``(caller, key)``:

* a transaction-scoped advisory lock on the key makes a concurrent duplicate
  fail fast with 409 ``idempotency_key_in_use`` instead of running twice;
* a stored key replays its stored response (status and body), marked with
  the ``Idempotent-Replayed: true`` header;
* the same key with a different request (method, path or body) is 422
  ``idempotency_key_reused``;
* otherwise the operation runs and the key row with its response is written
  in the *same transaction* as the effect, so either both commit or neither
  does (a crash mid-way leaves no key and the retry simply runs again).

Business refusals (4xx :class:`~shopkit.errors.ProblemError`) are stored and
replayed too: a retried debit that was refused stays refused, whatever the
balance is by then. Server errors (5xx) are not stored, so they can be retried.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Response, request
from flask import json as flask_json
from sqlalchemy import DateTime, Integer, String, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from shopkit.auth import require_principal
from shopkit.db import get_session, try_advisory_xact_lock
from shopkit.errors import ProblemError, problem_response

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")


class IdempotencyKeyMixin:
    """Columns of a service's ``idempotency_keys`` table (mix into its declarative base)."""

    __tablename__ = "idempotency_keys"

    caller: Mapped[str] = mapped_column(String(120), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


@dataclass(frozen=True)
class IdempotentResult:
    """What an idempotent operation answered, and whether it was a replay."""

    status: int
    body: dict[str, Any]
    replayed: bool

    @property
    def is_problem(self) -> bool:
        """True when the stored answer is an error (problem document)."""
        return self.status >= 400

    def to_response(self) -> Response:
        """Render as a Flask response (problem+json for errors)."""
        headers = {REPLAYED_HEADER: "true"} if self.replayed else {}
        if self.is_problem:
            return problem_response(self.body, headers)
        response = Response(
            flask_json.dumps(self.body), status=self.status, mimetype="application/json"
        )
        response.headers.update(headers)
        return response


def request_fingerprint(method: str, path: str, payload: Any) -> str:
    """A digest of what a request asks for; a key may only be reused for the same one."""
    canonical = json.dumps([method.upper(), path, payload], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_key_from_request(*, required: bool) -> str | None:
    """Read and check the ``Idempotency-Key`` header (400 if missing when ``required``)."""
    key = request.headers.get(HEADER)
    if key is None or key == "":
        if required:
            raise ProblemError(
                400,
                "idempotency_key_required",
                f"This call changes state: send an {HEADER} header.",
            )
        return None
    if not _KEY_RE.match(key):
        raise ProblemError(
            400,
            "invalid_idempotency_key",
            f"{HEADER} must be 1 to 200 printable ASCII characters without spaces.",
        )
    return key


def run_idempotent(
    session: Session,
    model: type[IdempotencyKeyMixin],
    *,
    scope: str,
    caller: str,
    key: str,
    fingerprint: str,
    operation: Callable[[], tuple[int, dict[str, Any]]],
) -> IdempotentResult:
    """Run ``operation`` at most once for ``(caller, key)`` and commit it with its key.

    ``operation`` performs the effect through ``session`` (without committing)
    and returns ``(status, json_body)``; it may raise a 4xx ``ProblemError``,
    whose answer is stored like a success. ``scope`` names the service schema
    so advisory locks of different services never collide.
    """
    if not try_advisory_xact_lock(session, "idempotency", scope, caller, key):
        session.rollback()
        raise ProblemError(
            409,
            "idempotency_key_in_use",
            "A request with this Idempotency-Key is still being processed; retry shortly.",
            headers={"Retry-After": "1"},
        )
    stored = session.execute(
        select(model).where(model.caller == caller, model.key == key)
    ).scalar_one_or_none()
    if stored is not None:
        session.rollback()
        if stored.fingerprint != fingerprint:
            raise ProblemError(
                422,
                "idempotency_key_reused",
                "This Idempotency-Key was already used for a different request.",
            )
        return IdempotentResult(stored.response_status, stored.response_body, replayed=True)

    try:
        with session.begin_nested():
            status, body = operation()
    except ProblemError as problem:
        if problem.status >= 500:
            session.rollback()
            raise
        status, body = problem.status, problem.to_body()
    except Exception:
        session.rollback()
        raise
    session.add(
        model(
            caller=caller,
            key=key,
            fingerprint=fingerprint,
            response_status=status,
            response_body=body,
        )
    )
    session.commit()
    return IdempotentResult(status, body, replayed=False)


def respond_idempotently(
    model: type[IdempotencyKeyMixin],
    operation: Callable[[], tuple[int, dict[str, Any]]],
    *,
    key_required: bool,
) -> Response:
    """Run a state-changing view body under the request's ``Idempotency-Key``.

    The key belongs to the authenticated caller and is stored in ``model``'s
    table (in the service's own schema). With a key, the effect happens at
    most once per ``(caller, key)`` (see :func:`run_idempotent`). Without one
    (allowed when ``key_required`` is false), the operation simply runs and
    commits. ``operation`` works through the request's session.
    """
    session = get_session()
    key = idempotency_key_from_request(required=key_required)
    if key is None:
        status, body = operation()
        session.commit()
        return IdempotentResult(status, body, replayed=False).to_response()
    fingerprint = request_fingerprint(request.method, request.path, request.get_json(silent=True))
    result = run_idempotent(
        session,
        model,
        scope=str(model.__table__.schema),  # type: ignore[attr-defined]
        caller=require_principal().subject,
        key=key,
        fingerprint=fingerprint,
        operation=operation,
    )
    return result.to_response()
