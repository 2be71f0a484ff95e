"""``shopkit.db.statement_too_slow``: a statement the server cancelled, not a database away."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from shopkit.db import statement_too_slow


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def test_a_statement_cancelled_at_its_timeout_is_too_slow(engine: Engine) -> None:
    with pytest.raises(OperationalError) as raised, engine.begin() as conn:
        conn.execute(text("SET LOCAL statement_timeout = 50"))
        conn.execute(text("SELECT pg_sleep(1)"))
    assert statement_too_slow(raised.value)


def test_a_lock_wait_past_its_timeout_is_too_slow(engine: Engine) -> None:
    with engine.begin() as holder:
        holder.execute(text("SELECT pg_advisory_xact_lock(4242)"))
        with pytest.raises(OperationalError) as raised, engine.begin() as waiter:
            waiter.execute(text("SET LOCAL lock_timeout = 50"))
            waiter.execute(text("SELECT pg_advisory_xact_lock(4242)"))
    assert statement_too_slow(raised.value)


def test_a_database_that_cannot_be_reached_is_not_too_slow() -> None:
    unreachable = create_engine("postgresql+psycopg2://nobody:secret@127.0.0.1:1/none")
    try:
        with pytest.raises(OperationalError) as raised, unreachable.connect():
            pass
        assert not statement_too_slow(raised.value)
    finally:
        unreachable.dispose()
