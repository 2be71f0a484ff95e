"""Fixtures of the event tests: a real embedded Valkey and the real test PostgreSQL.

The broker (:mod:`tests.support.broker`) is started once per session from
:mod:`devstack.broker` (the same code ``make run`` uses) and emptied before each test. The outbox, inbox and
effects tables live in the ``events_test`` schema, created for the session
and dropped after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from shopkit import faults
from shopkit.config import PROJECT_ROOT
from shopkit.events.consumer import BatchHandler, Consumer, ConsumerSettings, Handler
from shopkit.events.outbox import emit
from shopkit.events.relay import Relay, RelaySettings
from tests.events import tables, worker
from tests.support.database import broker as embedded_broker
from tests.support.events import FAST


@pytest.fixture(scope="session")
def events_schema(db_engine: Engine) -> Iterator[None]:
    """The ``events_test`` schema with the outbox, inbox and effects tables."""
    with db_engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {tables.SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {tables.SCHEMA}"))
    tables.metadata.create_all(db_engine)
    yield
    with db_engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {tables.SCHEMA} CASCADE"))


@pytest.fixture
def sessions(db_engine: Engine, events_schema: None) -> sessionmaker[Session]:
    """Sessions on the test database, the event tables emptied first."""
    with db_engine.begin() as conn:
        conn.execute(
            text(
                f"TRUNCATE {tables.SCHEMA}.outbox, {tables.SCHEMA}.inbox, "
                f"{tables.SCHEMA}.effects RESTART IDENTITY"
            )
        )
    return sessionmaker(db_engine)


@pytest.fixture
def relay(db_engine: Engine, valkey: redis.Redis, sessions: sessionmaker[Session]) -> Relay:
    """A relay for the test outbox."""
    return Relay(db_engine, tables.outbox, valkey, service="test", settings=RelaySettings())


@pytest.fixture
def make_consumer(valkey: redis.Redis, sessions: sessionmaker[Session]) -> Callable[..., Consumer]:
    """``make_consumer(group, streams, handler=None, **settings)``: a consumer with FAST settings."""

    def make(
        group: str,
        streams: list[str],
        handler: Handler | None = None,
        name: str = "tester",
        batch_handler: BatchHandler | None = None,
        **settings: Any,
    ) -> Consumer:
        chosen = ConsumerSettings(**{**FAST.__dict__, **settings})
        consumer = Consumer(
            valkey,
            sessions,
            tables.inbox,
            group=group,
            streams=streams,
            handler=None if batch_handler else handler or tables.record_effect(group),
            batch_handler=batch_handler,
            name=name,
            settings=chosen,
        )
        consumer.ensure_groups()
        return consumer

    return make


@pytest.fixture
def emit_orders(sessions: sessionmaker[Session]) -> Callable[..., list[str]]:
    """``emit_orders(n, order_ids=None)``: commit ``n`` order events (cycling over the ids)."""

    def emit_some(count: int, order_ids: list[str] | None = None) -> list[str]:
        ids = order_ids or [str(uuid.uuid4())]
        emitted = []
        with sessions() as session, session.begin():
            for i in range(count):
                order_id = ids[i % len(ids)]
                data = {"order_id": order_id, "customer_id": 7}
                emitted.append(
                    str(emit(session, tables.outbox, "shop.order.delivered.v1", order_id, data))
                )
        return emitted

    return emit_some


@pytest.fixture
def effects(db_engine: Engine, sessions: sessionmaker[Session]) -> Callable[[str], dict[str, int]]:
    """``effects(group)``: event id -> how many times ``group`` applied it."""

    def count(group: str) -> dict[str, int]:
        with db_engine.connect() as conn:
            rows = conn.execute(
                select(tables.effects.c.event_id, func.count())
                .where(tables.effects.c.consumer_group == group)
                .group_by(tables.effects.c.event_id)
            ).all()
        return {str(event_id): n for event_id, n in rows}

    return count


@pytest.fixture
def run_worker(
    database_url: str, broker: embedded_broker.Broker, tmp_path: Path
) -> Callable[..., int]:
    """``run_worker(role, point, **env)``: run ``tests.events.worker`` (a real process) with a
    crash armed at ``point`` through the faults engine; assert that it crashed there."""

    def run(role: str, point: str, **env: str) -> int:
        faults_dir = tmp_path / f"faults-{point}"
        faults.FaultStore(faults_dir / f"{worker.SERVICE}.json").replace(
            [{"kind": "crash", "after_step": point}]
        )
        done = subprocess.run(
            [sys.executable, "-m", "tests.events.worker", role],
            cwd=PROJECT_ROOT,
            env={
                **os.environ,
                "PYTHONPATH": str(PROJECT_ROOT),
                "DATABASE_URL": database_url,
                "EVENTS_URL": broker.url,
                "SHOP_FAULTS_DIR": str(faults_dir),
                **env,
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == faults.CRASH_EXIT_STATUS, (
            f"the worker did not crash at {point}: {done.stderr[-2000:]}"
        )
        assert f"exiting after {point}" in done.stderr
        return done.returncode

    return run


@pytest.fixture
def live_faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> faults.FaultStore:
    """This process's faults, as service ``test`` (the process's previous ones come back after)."""
    monkeypatch.setenv("SHOP_FAULTS_DIR", str(tmp_path / "faults"))
    monkeypatch.setattr(faults, "_installed", None)
    store = faults.install("test")
    assert store is not None
    return store
