"""Live faults (admin API, shared file, production refusal) and the database's client bounds."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from shopkit.db import Database
from shopkit.deadline import deadline_scope
from tests.support.identity import Identity, bearer


def test_faults_are_admin_only_validated_shared_and_cleared(
    customers: FlaskClient, identity: Identity
) -> None:
    admin = bearer(identity.admin_token())
    _, customer = identity.new_customer()
    assert customers.get("/admin/faults", headers=bearer(customer)).status_code == 403
    assert customers.get("/admin/faults").status_code == 401
    bad = customers.put(
        "/admin/faults", json={"faults": [{"kind": "latency", "route": "/x"}]}, headers=admin
    )
    assert bad.status_code == 422
    both = customers.put(
        "/admin/faults",
        json={"faults": [{"kind": "error", "route": "/x", "dependency": "sales"}]},
        headers=admin,
    )
    assert both.status_code == 422
    put = customers.put(
        "/admin/faults",
        json={"faults": [{"kind": "error", "route": "GET /customers", "status": 502}]},
        headers=admin,
    )
    assert put.status_code == 200, put.get_json()
    hit = customers.get("/customers/admin", headers=admin)
    assert (hit.status_code, hit.get_json()["code"]) == (502, "injected_fault")
    assert customers.get("/healthz").status_code == 200  # never touched
    listed = customers.get("/admin/faults", headers=admin).get_json()["faults"]
    assert listed[0]["kind"] == "error"
    assert customers.delete("/admin/faults", headers=admin).status_code == 204
    assert customers.get("/customers/admin", headers=admin).status_code == 200


def test_a_second_app_reading_the_same_file_sees_the_change(
    customers_app: Flask, customers: FlaskClient, identity: Identity
) -> None:
    """Workers share the set through one file: a store on the same path sees each change."""
    from shopkit.faults import FaultStore

    admin = bearer(identity.admin_token())
    store = customers_app.extensions["shop_faults"]
    other_worker = FaultStore(store.path)
    customers.put(
        "/admin/faults",
        json={"faults": [{"kind": "latency", "dependency": "sales", "latency_ms": 5}]},
        headers=admin,
    )
    assert other_worker.faults()[0]["latency_ms"] == 5
    customers.delete("/admin/faults", headers=admin)
    assert other_worker.faults() == []


def test_faults_are_refused_in_production(
    customers: FlaskClient, identity: Identity, monkeypatch: Any
) -> None:
    admin = bearer(identity.admin_token())
    monkeypatch.setenv("SHOP_ENV", "production")
    refused = customers.put("/admin/faults", json={"faults": []}, headers=admin)
    assert (refused.status_code, refused.get_json()["code"]) == (403, "faults_disabled")


def test_a_statement_is_cut_at_the_request_deadline_even_if_the_server_never_answers(
    database_url: str,
) -> None:
    """pg_sleep stands in for a frozen server: the server-side timeout is far away, the
    watchdog cuts the round trip at the deadline plus its grace."""
    database = Database(database_url, statement_timeout_ms=60_000)
    try:
        started = time.monotonic()
        with (
            database.engine.connect() as conn,
            deadline_scope(0.3),
            pytest.raises(OperationalError),
        ):
            conn.execute(text("SELECT pg_sleep(20)"))
        assert time.monotonic() - started < 3.0
        with database.engine.connect() as conn:  # the pool replaced the cut connection
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        database.dispose()


def test_no_connection_is_opened_or_awaited_past_the_request_deadline(database_url: str) -> None:
    """A connect that could outlive the deadline is not started, and the wait for a pooled
    connection ends at the deadline, not at ``pool_timeout``."""
    database = Database(database_url, pool_size=1)
    try:
        with deadline_scope(1.0), pytest.raises(OperationalError, match="too little to connect"):
            database.engine.connect()
        held = [database.engine.connect(), database.engine.connect()]  # pool and overflow
        database.engine.pool._pool_timeout = 30.0  # type: ignore[attr-defined]
        started = time.monotonic()
        with deadline_scope(0.3), pytest.raises(SATimeoutError):
            database.engine.connect()
        assert time.monotonic() - started < 1.0
        for conn in held:
            conn.close()
        with deadline_scope(5.0), database.engine.connect() as conn:  # time enough: it works
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        database.dispose()


def test_an_unreachable_database_is_503_database_unavailable(make_settings: Any) -> None:
    from customers_service import create_app

    settings = make_settings(
        "customers", database_url="postgresql+psycopg2://nobody@/shop?host=/nonexistent-socket"
    )
    app = create_app({"SETTINGS": settings, "TESTING": True})
    client = app.test_client()
    started = time.monotonic()
    answer = client.post("/auth/login", json={"username": "someone", "password": "x" * 10})
    assert (answer.status_code, answer.get_json()["code"]) == (503, "database_unavailable")
    assert answer.headers["Retry-After"]
    ready = client.get("/readyz")
    assert (ready.status_code, ready.get_json()["code"]) == (503, "not_ready")
    assert time.monotonic() - started < 5
