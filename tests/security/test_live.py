"""Findings that need real processes: gunicorn's own answers, database roles, deactivation."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from tests.support.database import ServiceProcess, free_port, service_role_url
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME


def raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_gunicorn_answers_problem_json_and_names_no_software(live_stack: Any) -> None:
    customers = live_stack.start("customers")
    answer = raw_request(
        customers.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"Content-Type: application/problem+json" in head
    assert b"<html>" not in body
    problem = json.loads(body)
    assert (problem["status"], problem["code"]) == (400, "bad_request")
    normal = requests.get(customers.url + "/healthz", timeout=5)
    assert "gunicorn" not in normal.headers.get("Server", "").lower()


def test_no_gunicorn_control_socket(tmp_path: Path, live_stack: Any) -> None:
    process = ServiceProcess(
        "customers",
        free_port(),
        env={**live_stack.env("customers"), "HOME": str(tmp_path), "XDG_RUNTIME_DIR": ""},
        workers=1,
        threads=1,
    )
    try:
        process.start().wait_ready()
        assert not (tmp_path / ".gunicorn").exists()
    finally:
        process.stop()


@pytest.mark.parametrize("service", ["inventory", "sales", "reviews"])
def test_a_service_role_cannot_read_the_signing_keys(database_url: str, service: str) -> None:
    engine = create_engine(service_role_url(database_url, service))
    try:
        with engine.connect() as conn, pytest.raises(ProgrammingError, match="permission denied"):
            conn.execute(text("SELECT private_pem FROM customers.signing_keys"))
    finally:
        engine.dispose()


def test_a_deactivated_customer_is_refused_by_reviews_and_sales(
    live_stack: Any, identity: Any
) -> None:
    for service in ("customers", "inventory", "sales", "reviews"):
        live_stack.start(service)
    profile = identity.register()
    token = live_stack.token(profile["username"], profile["password"])
    auth = {"Authorization": f"Bearer {token}"}
    reviews = live_stack.url("reviews") + f"/customers/{profile['username']}/reviews"
    sales = live_stack.url("sales") + f"/customers/{profile['username']}/sales"
    assert requests.get(sales, headers=auth, timeout=10).status_code == 200
    review = requests.post(
        live_stack.url("reviews") + "/reviews",
        json={"product_id": 1, "rating": 5, "comment": "x"},
        headers=auth,
        timeout=10,
    )
    assert review.status_code != 401
    admin = live_stack.token(ADMIN_USERNAME, ADMIN_PASSWORD)
    gone = requests.delete(
        live_stack.url("customers") + f"/customers/{profile['username']}",
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert gone.status_code == 204
    deadline = time.monotonic() + 30
    refused: dict[str, int] = {}
    while time.monotonic() < deadline and len(refused) < 2:
        for name, url in (("sales", sales), ("reviews", reviews)):
            response = requests.get(url, headers=auth, timeout=10)
            if response.status_code == 401:
                assert response.json()["code"] == "account_inactive"
                refused[name] = response.status_code
        time.sleep(0.5)
    assert refused == {"sales": 401, "reviews": 401}
    time.sleep(2.5)  # every worker now re-reads the list first (DEACTIVATION_REFRESH=2 here)
    for _ in range(4):  # posting is refused too, whichever worker answers
        posted = requests.post(
            live_stack.url("reviews") + "/reviews",
            json={"product_id": 1, "rating": 1, "comment": "still here?"},
            headers=auth,
            timeout=10,
        )
        assert posted.status_code == 401, posted.json()
        assert posted.json()["code"] == "account_inactive"


def test_the_embedded_database_gives_each_service_its_own_role(tmp_path: Path) -> None:
    from shopkit.migrations import upgrade
    from tests.support.database import postgres, roles

    server, _admin_url = postgres.start(tmp_path / "pg")
    try:
        urls = {s: roles.database_url(tmp_path / "pg", s) for s in ("customers", "sales")}
        assert make_url(urls["sales"]).username == "sales_svc"
        upgrade("customers_service", urls["customers"])  # as the customers role, as make run does
        sales = create_engine(urls["sales"])
        try:
            with sales.connect() as conn, pytest.raises(ProgrammingError, match="permission"):
                conn.execute(text("SELECT private_pem FROM customers.signing_keys"))
        finally:
            sales.dispose()
    finally:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=30)  # type: ignore[attr-defined]
