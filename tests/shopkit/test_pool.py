"""Pooled connections: only idle ones are pinged, and a dropped one is replaced unseen."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from shopkit.db import ping_when_idle


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A one-connection pool."""
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def backend_pid(engine: Engine) -> int:
    """The server process behind the pool's connection (checked out and back in)."""
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def kill(database_url: str, pid: int) -> None:
    """Terminate a server process, as a database restart would; return once it has exited.

    With a timeout (PostgreSQL 14+) ``pg_terminate_backend`` waits for the backend
    to exit and returns true only if it did within that time.
    """
    killer = create_engine(database_url)
    try:
        with killer.connect() as conn:
            terminated = conn.execute(
                text("SELECT pg_terminate_backend(:p, 5000)"), {"p": pid}
            ).scalar_one()
            assert terminated, f"backend {pid} still running 5 s after pg_terminate_backend"
            gone = conn.execute(
                text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
            ).scalar_one()
            assert gone, f"backend {pid} still listed in pg_stat_activity"
    finally:
        killer.dispose()


def count_pings(engine: Engine) -> list[int]:
    """Record each ping the dialect makes."""
    pings: list[int] = []
    original = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return original(dbapi_connection)

    engine.dialect.do_ping = counted  # type: ignore[method-assign]
    return pings


def test_an_idle_dropped_connection_is_replaced(engine: Engine, database_url: str) -> None:
    ping_when_idle(engine, 0.0)
    pings = count_pings(engine)
    first = backend_pid(engine)
    kill(database_url, first)
    second = backend_pid(engine)  # no error: the ping found it dead
    assert second != first
    assert pings


def test_a_connection_in_steady_use_is_not_pinged(engine: Engine, database_url: str) -> None:
    ping_when_idle(engine, 60.0)
    pings = count_pings(engine)
    for _ in range(5):
        backend_pid(engine)
    assert pings == []
    # Which is why a connection dropped right after use is only found out when used.
    kill(database_url, backend_pid(engine))
    with pytest.raises(OperationalError):
        backend_pid(engine)
