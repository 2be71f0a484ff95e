"""The idempotency store (``shopkit.idempotency.run_idempotent``) against a real schema.

The customers schema's ``idempotency_keys`` table stands in for every
service's; the effects are plain rows of a scratch table, so what is rolled
back and what is kept can be counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from customers_service.models import IdempotencyKey
from shopkit.db import RollbackOnly, transaction
from shopkit.errors import Conflict, ProblemError
from shopkit.idempotency import (
    BatchItem,
    IdempotentResult,
    request_fingerprint,
    run_idempotent,
    run_idempotent_batch,
)

SCOPE = "customers"
CALLER = "sales"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine with a scratch ``effects`` table, emptied for each test."""
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS public.idem_effects (note text)"))
        conn.execute(text("TRUNCATE public.idem_effects"))
    yield engine
    engine.dispose()


def effects(engine: Engine) -> list[str]:
    """What the operations left behind, in order."""
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT note FROM public.idem_effects")).scalars())


def write(session: Session, note: str) -> None:
    """An operation's effect: one row."""
    session.execute(text("INSERT INTO public.idem_effects VALUES (:n)"), {"n": note})


def run(
    session: Session,
    key: str,
    operation: Callable[[], tuple[int, dict[str, Any]]],
    payload: Any = "same",
) -> IdempotentResult:
    """``run_idempotent`` on the customers' key table."""
    return run_idempotent(
        session,
        IdempotencyKey,
        scope=SCOPE,
        caller=CALLER,
        key=key,
        fingerprint=request_fingerprint("POST", "/x", payload),
        operation=operation,
    )


def test_effect_and_key_commit_together_and_replay(customers_app: Flask, engine: Engine) -> None:
    with Session(engine) as session:

        def operation() -> tuple[int, dict[str, Any]]:
            write(session, "once")
            return 201, {"done": True}

        first = run(session, "k1", operation)
        again = run(session, "k1", operation)
        with pytest.raises(ProblemError) as reused:
            run(session, "k1", operation, payload="other")
    assert (first.status, first.body, first.replayed) == (201, {"done": True}, False)
    assert (again.status, again.body, again.replayed) == (201, {"done": True}, True)
    assert reused.value.code == "idempotency_key_reused"
    assert effects(engine) == ["once"]


def test_a_refusal_undoes_what_the_operation_wrote_and_is_stored(
    customers_app: Flask, engine: Engine
) -> None:
    calls = []
    with Session(engine) as session:

        def refused() -> tuple[int, dict[str, Any]]:
            calls.append(1)
            write(session, "half-done")
            raise Conflict("insufficient_funds", "Not enough.")

        first = run(session, "k2", refused)
        again = run(session, "k2", refused)
    assert (first.status, first.body["code"], first.replayed) == (409, "insufficient_funds", False)
    assert (again.status, again.body["code"], again.replayed) == (409, "insufficient_funds", True)
    assert calls == [1]  # the replay did not run it again
    assert effects(engine) == []


def test_a_server_error_is_not_stored_and_can_be_retried(
    customers_app: Flask, engine: Engine
) -> None:
    with Session(engine) as session:

        def broken() -> tuple[int, dict[str, Any]]:
            write(session, "lost")
            raise ProblemError(503, "dependency_unavailable", "Away.")

        with pytest.raises(ProblemError):
            run(session, "k3", broken)

        def working() -> tuple[int, dict[str, Any]]:
            write(session, "kept")
            return 200, {}

        assert run(session, "k3", working).replayed is False
    assert effects(engine) == ["kept"]


def test_a_key_in_flight_is_409(customers_app: Flask, engine: Engine) -> None:
    with Session(engine) as holder, Session(engine) as duplicate:

        def slow() -> tuple[int, dict[str, Any]]:
            write(holder, "first")
            with pytest.raises(ProblemError) as caught:
                run(duplicate, "k4", lambda: (201, {}))
            assert caught.value.code == "idempotency_key_in_use"
            return 201, {"who": "first"}

        result = run(holder, "k4", slow)
    assert result.body == {"who": "first"}
    assert effects(engine) == ["first"]


def test_a_duplicate_that_slipped_past_the_lock_is_rolled_back_and_replays(
    customers_app: Flask, engine: Engine
) -> None:
    """The lock and the lookup share one statement; a duplicate committing in between (it
    stored the key and released the lock before this one's lookup could see it) must not
    make the effect happen twice: the key's primary key catches it."""
    with Session(engine) as session, Session(engine) as other:

        def operation() -> tuple[int, dict[str, Any]]:
            write(session, "duplicate effect")
            # Meanwhile a duplicate finished: its effect and its key are committed.
            write(other, "the effect")
            other.add(
                IdempotencyKey(
                    caller=CALLER,
                    key="k5",
                    fingerprint=request_fingerprint("POST", "/x", "same"),
                    response_status=201,
                    response_body={"who": "other"},
                )
            )
            other.commit()
            return 201, {"who": "this"}

        result = run(session, "k5", operation)
    assert (result.body, result.replayed) == ({"who": "other"}, True)
    assert effects(engine) == ["the effect"]


def test_a_refused_batch_item_does_not_clear_a_failure_from_before_its_savepoint(
    customers_app: Flask, engine: Engine
) -> None:
    """A nested block failed (and was caught) before an item's savepoint: rolling the
    refused item back leaves the unit of work rollback-only, so nothing commits."""
    with Session(engine) as session:

        def before() -> None:
            try:
                with transaction(session):
                    write(session, "half-done before the items")
                    raise ValueError("failed half-way")
            except ValueError:
                pass

        def refused() -> tuple[int, dict[str, Any]]:
            write(session, "refused")
            raise Conflict("insufficient_funds", "Not enough.")

        item = BatchItem("k-batch", request_fingerprint("POST", "/x", "same"), refused)
        with pytest.raises(RollbackOnly):
            run_idempotent_batch(session, IdempotencyKey, scope=SCOPE, caller=CALLER,
                                 items=[item], before=before)  # fmt: skip
        assert run(session, "k-batch", refused).replayed is False  # the key was not stored
    assert effects(engine) == []
