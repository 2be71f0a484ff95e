"""The idempotency-key store (docs/architecture.rst, "Idempotency").

Each service has an ``idempotency_keys`` table in its own schema (a model
built from :class:`IdempotencyKeyMixin`). :func:`run_idempotent` performs a
state-changing operation at most once per ``(caller, key)``:

* a transaction-scoped advisory lock on the key makes a concurrent duplicate
  fail fast with 409 ``idempotency_key_in_use`` instead of running twice, and
  the key's primary key settles any duplicate that slips past the lock;
* a stored key replays its stored response (status and body), marked with
  the ``Idempotent-Replayed: true`` header;
* the same key with a different request (method, path or body) is 422
  ``idempotency_key_reused``;
* otherwise the operation runs and the key row with its response is written
  in the *same transaction* as the effect, so either both commit or neither
  does (a crash mid-way leaves no key and the retry simply runs again).
  The operation's own unit of work (:func:`shopkit.db.transaction`) joins
  the one opened here; it rolls back as a whole on a refusal (there is no
  savepoint), and a refusal is final only once stored.

Business refusals (4xx :class:`~shopkit.errors.ProblemError`) are stored and
replayed too: a retried debit that was refused stays refused, whatever the
balance is by then. Server errors (5xx) are not stored, so they can be retried.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Response, request
from flask import json as flask_json
from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Insert,
    Integer,
    Select,
    String,
    Table,
    TextClause,
    and_,
    bindparam,
    column,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, Session, mapped_column

from shopkit.auth import require_principal
from shopkit.db import (
    advisory_key,
    get_session,
    rollback_only,
    transaction,
    undone_to_savepoint,
)
from shopkit.errors import ProblemError, problem_response
from shopkit.telemetry import untraced

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
#: What a key may be: 1 to 200 printable ASCII characters, no spaces (header or batch item).
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,200}$")


def idempotency_key_doc(*, required: bool = False, description: str = "") -> dict[str, Any]:
    """The OpenAPI parameter of the ``Idempotency-Key`` header, as the server checks it."""
    return {
        "in": "header",
        "name": HEADER,
        "required": required,
        "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]+$"},
        "description": (description + " " if description else "")
        + "1 to 200 printable ASCII characters, no spaces. A retry with the same key replays "
        "the first answer (with `Idempotent-Replayed: true`); the same key with a different "
        "request is 422 `idempotency_key_reused`; a key still in flight is 409 "
        "`idempotency_key_in_use`.",
    }


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
    """Read and check the ``Idempotency-Key`` header (400 if missing when ``required``).

    A header that is present must hold a valid key, even where the key is optional:
    an empty one is 400, not silently "no key".
    """
    key = request.headers.get(HEADER)
    if key is None or (key == "" and required):
        if required:
            raise ProblemError(
                400,
                "idempotency_key_required",
                f"This call changes state: send an {HEADER} header.",
            )
        return None
    if not KEY_PATTERN.fullmatch(key):
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

    The common case is ``BEGIN``, the lock with the key lookup, the
    operation's own statements (one, for the hot internal calls), the key
    insert and ``COMMIT``: five round trips for such a call. There
    is no savepoint: a refusal rolls the whole transaction back and is stored
    in a transaction of its own, since it has no effect to keep.
    """
    statements = _statements(model.__table__)  # type: ignore[attr-defined]
    names = {"caller": caller, "key": key}
    # One statement takes the lock and looks the key up. Its snapshot may
    # predate the commit of a duplicate that held the lock a moment ago; then
    # the key insert below meets that duplicate's row and everything done here
    # is rolled back and the stored answer replayed instead.
    lock = advisory_key("idempotency", scope, caller, key)
    found = session.execute(statements.lock_and_find, {"lock": lock, **names}).one()
    if not found.locked:
        session.rollback()
        raise _in_use()
    if found.response_status is not None:
        session.rollback()
        return _stored(found, fingerprint)

    try:
        with transaction(session):
            status, body = operation()
            _claim(session, statements, names, fingerprint, status, body)
    except _KeyTaken:
        return _replay_winner(session, statements, names, fingerprint)
    except ProblemError as problem:
        if problem.status >= 500:
            raise
        # A refusal has no effect to keep: it is stored in a transaction of its own.
        status, body = problem.status, problem.to_body()
        try:
            with transaction(session):
                _claim(session, statements, names, fingerprint, status, body)
        except _KeyTaken:
            return _replay_winner(session, statements, names, fingerprint)
    return IdempotentResult(status, body, replayed=False)


def _in_use() -> ProblemError:
    return ProblemError(
        409,
        "idempotency_key_in_use",
        "A request with this Idempotency-Key is still being processed; retry shortly.",
        headers={"Retry-After": "1"},
    )


def _stored(row: Any, fingerprint: str) -> IdempotentResult:
    """The stored answer of a key as a replay (422 if it was for another request)."""
    if row.fingerprint != fingerprint:
        raise ProblemError(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was already used for a different request.",
        )
    return IdempotentResult(row.response_status, row.response_body, replayed=True)


class _KeyTaken(Exception):
    """A concurrent duplicate stored the key first: this transaction must not commit."""


def _claim(
    session: Session,
    statements: _KeyStatements,
    names: dict[str, str],
    fingerprint: str,
    status: int,
    body: dict[str, Any],
) -> None:
    """Write the key with its answer, in the caller's transaction (with the effect, after a
    success; alone, after a refusal). Raises :class:`_KeyTaken` if a concurrent duplicate
    stored it first: the transaction (its effect included) is then rolled back."""
    row = {**names, "fingerprint": fingerprint, "status": status, "body": body}
    if session.execute(statements.claim, row).first() is None:
        raise _KeyTaken()


def _replay_winner(
    session: Session, statements: _KeyStatements, names: dict[str, str], fingerprint: str
) -> IdempotentResult:
    """The answer of the duplicate that stored the key first (after this one rolled back)."""
    stored = session.execute(statements.find, names).first()
    session.rollback()
    if stored is None:  # the conflicting row was rolled back in the meantime: try again later
        raise _in_use()
    return _stored(stored, fingerprint)


@dataclass(frozen=True)
class BatchItem:
    """One call inside a batch: its own key, the fingerprint its single call would have,
    and its operation (as for :func:`run_idempotent`)."""

    key: str
    fingerprint: str
    operation: Callable[[], tuple[int, dict[str, Any]]]


#: PostgreSQL's ``deadlock_detected`` and ``serialization_failure``.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def run_idempotent_batch(
    session: Session,
    model: type[IdempotencyKeyMixin],
    *,
    scope: str,
    caller: str,
    items: Sequence[BatchItem],
    before: Callable[[], None] | None = None,
    after: Callable[[list[IdempotentResult]], None] | None = None,
) -> list[IdempotentResult]:
    """Run many idempotent calls in ONE transaction, each exactly as :func:`run_idempotent`
    would run it alone; one answer per item, in order. ``before`` runs first in the
    transaction, once the keys are looked up (a batch locking its rows up front);
    ``after(answers)`` runs last in it, before the commit (a batch writing the
    events of the items that took effect in one statement).

    Each item keeps its own key, lock, stored answer and fingerprint, so a batch
    retried after the callee committed replays item by item, and an item's key
    replays the same way through the single endpoint (recovery) as through a
    batch. One statement takes every key's advisory lock and looks every key up.
    Each item then runs inside a savepoint with its key's claim: a refusal (4xx)
    rolls back that item's effect only and is stored like a success; a key held
    by a concurrent call answers 409 ``idempotency_key_in_use`` for that item
    (nothing stored, the caller retries it); a 5xx refusal is answered and not
    stored. Every other item commits with the batch. A deadlock with another
    transaction (two batches touching the same rows in different orders) is 503
    ``batch_conflict``: nothing was written, the whole batch may be retried.
    """
    table = model.__table__  # type: ignore[attr-defined]
    statements = _statements(table)
    keys = [item.key for item in items]
    locks = [advisory_key("idempotency", scope, caller, key) for key in keys]
    try:
        with transaction(session):
            found = session.execute(
                statements.lock_and_find_many, {"caller": caller, "keys": keys, "locks": locks}
            ).all()
            if before is not None:
                before()
            results: list[IdempotentResult | None] = [None] * len(items)
            for position, (item, row) in enumerate(zip(items, found, strict=True)):
                if not row.locked:
                    results[position] = _problem_result(_in_use())
                elif row.response_status is not None:
                    results[position] = _stored_or_reused(row, item.fingerprint)
                else:
                    results[position] = _run_in_savepoint(session, statements, caller, item)
            if after is not None:
                after([result for result in results if result is not None])
    except DBAPIError as exc:
        if getattr(exc.orig, "pgcode", None) in _RETRYABLE_SQLSTATES:
            raise ProblemError(
                503,
                "batch_conflict",
                "The batch met a concurrent one; nothing was written, retry it.",
                headers={"Retry-After": "0"},
            ) from None
        raise
    return [result for result in results if result is not None]


#: One savepoint per batch item, by plain SQL: the ORM's nested transaction costs more
#: than the item's own statements, and the operations write through Core anyway.
_SAVEPOINT = text("SAVEPOINT batch_item")
_RELEASE = text("RELEASE SAVEPOINT batch_item")
_ROLLBACK_TO = text("ROLLBACK TO SAVEPOINT batch_item")


def _savepoint(connection: Connection, statement: TextClause) -> None:
    """Run a savepoint statement with no SQL span: like BEGIN and COMMIT, which the SQL
    instrumentation never sees, it is transaction control, and two spans per batch item
    would be a sixth of a traced sale's spans (and of what tracing costs)."""
    with untraced():
        connection.execute(statement)


def _run_in_savepoint(
    session: Session, statements: _KeyStatements, caller: str, item: BatchItem
) -> IdempotentResult:
    """One item of :func:`run_idempotent_batch`: its effect and its key, or neither."""
    names = {"caller": caller, "key": item.key}
    connection = session.connection()
    _savepoint(connection, _SAVEPOINT)
    rollback_only_then = rollback_only(session)
    try:
        status, body = item.operation()
    except ProblemError as problem:
        _undo(session, rollback_only_then)
        if problem.status >= 500:
            _savepoint(connection, _RELEASE)
            return _problem_result(problem)
        status, body = problem.status, problem.to_body()
    row = {**names, "fingerprint": item.fingerprint, "status": status, "body": body}
    if connection.execute(statements.claim, row).first() is not None:
        _savepoint(connection, _RELEASE)
        return IdempotentResult(status, body, replayed=False)
    # A duplicate committed the key between the lookup and the claim: its answer wins.
    _undo(session, rollback_only_then)
    _savepoint(connection, _RELEASE)
    stored = connection.execute(statements.find, names).first()
    return (
        _problem_result(_in_use())
        if stored is None
        else _stored_or_reused(stored, item.fingerprint)
    )


def _undo(session: Session, rollback_only_then: bool) -> None:
    """Roll the item back to its savepoint, and the unit of work's rollback-only flag to
    its value then; objects it loaded are read again when next used."""
    _savepoint(session.connection(), _ROLLBACK_TO)
    undone_to_savepoint(session, rollback_only_then)
    session.expire_all()


def _stored_or_reused(row: Any, fingerprint: str) -> IdempotentResult:
    try:
        return _stored(row, fingerprint)
    except ProblemError as problem:
        return _problem_result(problem)


def _problem_result(problem: ProblemError) -> IdempotentResult:
    return IdempotentResult(problem.status, problem.to_body(), replayed=False)


@dataclass(frozen=True)
class _KeyStatements:
    """The statements on one ``idempotency_keys`` table, built once (bound by name)."""

    lock_and_find: Select[Any]
    lock_and_find_many: Select[Any]
    find: Select[Any]
    claim: Insert


@functools.cache
def _statements(table: Table) -> _KeyStatements:
    answer = (table.c.fingerprint, table.c.response_status, table.c.response_body)
    this_key = and_(table.c.caller == bindparam("caller"), table.c.key == bindparam("key"))
    one_row = select(literal(1).label("one")).subquery("one")
    wanted = (
        func.unnest(
            bindparam("keys", type_=ARRAY(String)), bindparam("locks", type_=ARRAY(BigInteger))
        )
        .table_valued(column("key", String), column("lock", BigInteger), with_ordinality="position")
        .render_derived(name="wanted")
    )
    return _KeyStatements(
        lock_and_find=select(
            func.pg_try_advisory_xact_lock(bindparam("lock", type_=BigInteger)).label("locked"),
            *answer,
        ).select_from(one_row.outerjoin(table, this_key)),
        lock_and_find_many=select(
            func.pg_try_advisory_xact_lock(wanted.c.lock).label("locked"), *answer
        )
        .select_from(
            wanted.outerjoin(
                table, and_(table.c.caller == bindparam("caller"), table.c.key == wanted.c.key)
            )
        )
        .order_by(wanted.c.position),
        find=select(*answer).where(this_key),
        claim=pg_insert(table)
        .values(
            caller=bindparam("caller"),
            key=bindparam("key"),
            fingerprint=bindparam("fingerprint"),
            response_status=bindparam("status", type_=table.c.response_status.type),
            response_body=bindparam("body", type_=table.c.response_body.type),
        )
        .on_conflict_do_nothing()
        .returning(table.c.key),
    )


def respond_idempotently(
    model: type[IdempotencyKeyMixin],
    operation: Callable[[], tuple[int, dict[str, Any]]],
    *,
    key_required: bool,
    location: Callable[[dict[str, Any]], str] | None = None,
) -> Response:
    """Run a state-changing view body under the request's ``Idempotency-Key``.

    ``location`` makes the ``Location`` header of a 201 (first answer and
    replay alike) from its body.

    The key belongs to the authenticated caller (role and subject) and is stored in ``model``'s
    table (in the service's own schema). With a key, the effect happens at
    most once per ``(caller, key)`` (see :func:`run_idempotent`). Without one
    (allowed when ``key_required`` is false), the operation simply runs and
    commits. ``operation`` works through the request's session.
    """
    session = get_session()
    key = idempotency_key_from_request(required=key_required)
    if key is None:
        with transaction(session):
            status, body = operation()
        return _located(IdempotentResult(status, body, replayed=False), location)
    fingerprint = request_fingerprint(request.method, request.path, request.get_json(silent=True))
    principal = require_principal()
    result = run_idempotent(
        session,
        model,
        scope=str(model.__table__.schema),  # type: ignore[attr-defined]
        # Subjects of different roles may coincide (a customer may be called
        # "sales"): the role keeps their keys apart.
        caller=f"{principal.role}:{principal.subject}",
        key=key,
        fingerprint=fingerprint,
        operation=operation,
    )
    return _located(result, location)


def _located(
    result: IdempotentResult, location: Callable[[dict[str, Any]], str] | None
) -> Response:
    response = result.to_response()
    if location is not None and result.status == 201:
        response.headers["Location"] = location(result.body)
    return response
