"""What every service gets from shopkit, checked on the customers app and a live process."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from shopkit.logs import JsonFormatter
from shopkit.migrations import head_revision
from tests.support.identity import Identity, bearer


def test_healthz_and_readyz(customers: FlaskClient) -> None:
    assert customers.get("/healthz").get_json() == {"status": "ok", "service": "customers"}
    ready = customers.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["schema_revision"] == head_revision("customers_service") != ""


def test_readyz_is_503_when_schema_is_behind(
    customers_app: Flask, customers: FlaskClient, database_url: str
) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.begin() as conn:
        head = conn.execute(text("SELECT version_num FROM customers.alembic_version")).scalar_one()
        conn.execute(text("UPDATE customers.alembic_version SET version_num = 'old'"))
    try:
        response = customers.get("/readyz")
        assert response.status_code == 503
        assert response.get_json()["code"] == "not_ready"
    finally:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE customers.alembic_version SET version_num = :head"), {"head": head}
            )
        engine.dispose()


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/no/such/thing", 404, "not_found"),
        ("put", "/customers", 405, "method_not_allowed"),
        ("delete", "/auth/login", 405, "method_not_allowed"),
    ],
)
def test_errors_are_problem_json(
    customers: FlaskClient, method: str, path: str, status: int, code: str
) -> None:
    response = getattr(customers, method)(path)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith(code)
    assert {"title", "detail", "instance", "request_id"} <= set(body)


def test_unexpected_exception_is_500_problem_without_internals(make_settings: Any) -> None:
    from customers_service import create_app

    app = create_app({"SETTINGS": make_settings("customers")})

    @app.get("/__boom_for_test")
    def boom() -> Any:
        raise RuntimeError("secret internal detail")

    response = app.test_client().get("/__boom_for_test")
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "internal_error"
    assert "secret internal detail" not in response.get_data(as_text=True)


def test_oversized_body_is_413_problem(customers: FlaskClient) -> None:
    response = customers.post(
        "/customers", data="x" * (5 * 1024 * 1024), content_type="application/json"
    )
    assert response.status_code == 413
    assert response.get_json()["code"] == "payload_too_large"


def test_request_id_is_echoed_or_generated(customers: FlaskClient) -> None:
    echoed = customers.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    generated = customers.get("/healthz")
    assert len(generated.headers["X-Request-ID"]) == 32
    hostile = customers.get("/healthz", headers={"X-Request-ID": "<script>" + "x" * 300})
    assert len(hostile.headers["X-Request-ID"]) == 32  # replaced, not echoed
    problem = customers.get("/nowhere", headers={"X-Request-ID": "trace-me"}).get_json()
    assert problem["request_id"] == "trace-me"


def test_log_lines_are_json_with_request_id_and_no_secrets(
    customers: FlaskClient, identity: Identity, caplog: pytest.LogCaptureFixture
) -> None:
    profile = identity.register("logcheck")
    with caplog.at_level(logging.DEBUG, logger="shop.access"):  # a 200 is a debug line
        customers.post(
            "/auth/login",
            json={"username": "logcheck", "password": profile["password"]},
            headers={"X-Request-ID": "login-req-1"},
        )
    records = [r for r in caplog.records if r.name == "shop.access"]
    assert records
    line = json.loads(JsonFormatter("customers").format(records[-1]))
    assert line["request_id"] == "login-req-1"
    assert line["status"] == 200
    assert line["path"] == "/auth/login"
    assert profile["password"] not in caplog.text


def test_openapi_and_offline_swagger_ui(customers: FlaskClient) -> None:
    spec = customers.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for path in (
        "/customers",
        "/auth/login",
        "/internal/wallet-debits",
        "/customers/{username}/wallet",
    ):
        assert path in paths
    assert paths["/customers"]["get"]["security"] == [{"bearerAuth": []}]
    page = customers.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/docs/static/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    assert customers.get("/docs/static/swagger-ui-bundle.js").status_code == 200


def jwks_count(metrics_text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("flask_http_request_duration_seconds_count{")
        and 'endpoint="auth.jwks"' in line
        and 'status="200"' in line
    )


@pytest.mark.processes
def test_metrics_add_up_across_gunicorn_workers(live_stack: Any) -> None:
    process = live_stack.start("customers", workers=2)
    before = jwks_count(requests.get(process.url + "/metrics", timeout=5).text)
    for _ in range(40):
        # New connections spread the requests over both workers.
        requests.get(process.url + "/.well-known/jwks.json", timeout=5)
    after = jwks_count(requests.get(process.url + "/metrics", timeout=5).text)
    # Samples of every worker are pooled; other services may fetch the JWKS meanwhile.
    assert after - before >= 40


def test_customer_token_is_refused_on_internal_routes(
    customers: FlaskClient, identity: Identity
) -> None:
    _, token = identity.new_customer()
    response = customers.post("/internal/wallet-credits", json={}, headers=bearer(token))
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("get", "/customers?q=%00", {}),
        ("post", "/auth/login", {"json": {"username": "a\x00b", "password": "x"}}),
        ("post", "/customers", {"json": {"nested": ["\x00"]}}),
    ],
)
def test_nul_characters_are_422_not_500(
    customers: FlaskClient, identity: Identity, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    response = getattr(customers, method)(path, headers=bearer(identity.admin_token()), **kwargs)
    assert response.status_code == 422
    assert response.get_json()["code"] == "validation_error"


def test_lone_surrogates_are_422_not_500(customers: FlaskClient) -> None:
    body = '{"username": "ab\\ud800c", "password": "whatever1"}'
    response = customers.post("/auth/login", data=body, content_type="application/json")
    assert response.status_code == 422
    assert response.get_json()["code"] == "validation_error"


@pytest.mark.processes
def test_chunked_json_body_is_guarded_too(live_stack: Any) -> None:
    """A body sent without Content-Length (chunked) is checked like any other."""
    process = live_stack.start("customers")
    chunks = iter([b'{"username": "ab\\ud800c", ', b'"password": "whatever1"}'])
    response = requests.post(
        process.url + "/auth/login",
        data=chunks,  # a generator: requests sends it chunked, with no Content-Length
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
