"""``shopkit.db.transaction``: one unit of work, committed once, never half-committed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from shopkit.db import RollbackOnly, transaction


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS unit_of_work_probe (n int)"))
        conn.execute(text("TRUNCATE unit_of_work_probe"))
    with sessionmaker(engine)() as session:
        yield session
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE unit_of_work_probe"))
    engine.dispose()


def _rows(session: Session) -> list[int]:
    return list(session.scalars(text("SELECT n FROM unit_of_work_probe ORDER BY n")))


def _insert(session: Session, n: int) -> None:
    session.execute(text("INSERT INTO unit_of_work_probe VALUES (:n)"), {"n": n})


def test_the_outermost_block_commits_what_nested_blocks_wrote(session: Session) -> None:
    with transaction(session):
        _insert(session, 1)
        with transaction(session):
            _insert(session, 2)
    session.rollback()  # nothing left open: both rows were committed
    assert _rows(session) == [1, 2]


def test_a_raising_block_writes_nothing(session: Session) -> None:
    with pytest.raises(ValueError), transaction(session):
        _insert(session, 1)
        raise ValueError("refused")
    assert _rows(session) == []


def test_a_caught_nested_failure_cannot_commit_its_half_done_writes(session: Session) -> None:
    with pytest.raises(RollbackOnly), transaction(session):
        _insert(session, 1)
        try:
            with transaction(session):
                _insert(session, 2)
                raise ValueError("the nested operation failed half-way")
        except ValueError:
            pass  # a caller that swallows the error must not commit row 2
    assert _rows(session) == []
    with transaction(session):  # the session is usable again, with a clean slate
        _insert(session, 3)
    assert _rows(session) == [3]
