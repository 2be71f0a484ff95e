"""A request's deadline counts from its arrival: queued time counts, a stale request is refused.

The first test runs the real gunicorn worker (one thread) so a request waits
in its queue behind one that holds the thread; the others check how the start
is chosen from the worker's note and the gateway's ``X-Request-Start``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from flask import Flask, jsonify

from shopkit import deadline
from shopkit.deadline import ARRIVAL_ENVIRON, START_HEADER, init_deadline
from shopkit.errors import register_error_handlers
from shopkit.proxy import trusted_networks
from tests.support.database import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def one_thread_server() -> Iterator[str]:
    """``tests.shopkit.deadline_app`` under gunicorn: one worker, one thread, 1 s budgets."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REQUEST_DEADLINE": "1.0",
    }
    command = [
        sys.executable, "-m", "gunicorn",
        "--worker-class", "shopkit.gunicorn_worker.HealthFirstWorker",
        "--workers", "1", "--threads", "1",
        "--bind", f"127.0.0.1:{port}",
        "tests.shopkit.deadline_app:app",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        until = time.monotonic() + 20
        while True:
            try:
                requests.get(url + "/quick", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > until or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_request_that_waited_past_its_budget_in_the_queue_gets_503(
    one_thread_server: str,
) -> None:
    url = one_thread_server
    ran_before = requests.get(url + "/ran", timeout=5).json()["quick"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        held = pool.submit(requests.get, url + "/hold", timeout=10)
        time.sleep(0.2)  # /hold has the only thread for 3 s; /quick waits behind it
        queued = pool.submit(requests.get, url + "/quick", timeout=10)
        answer = queued.result()
        # Answered by the worker once its 1 s budget ran out, not when the thread let go.
        assert not held.done(), "the queued request was answered only after /hold finished"
        assert held.result().status_code == 200
    assert answer.status_code == 503
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.headers["Retry-After"] == str(deadline.RETRY_AFTER_S)
    assert answer.headers["Content-Length"] == str(len(answer.content))
    assert answer.json()["code"] == "request_expired"
    assert requests.get(url + "/ran", timeout=5).json()["quick"] == ran_before  # never ran
    # Once the thread is free, the same request is served.
    assert requests.get(url + "/quick", timeout=5).json() == {"ran": "yes"}


def _app(trusted: str = "") -> Flask:
    app = Flask(__name__)
    register_error_handlers(app)
    init_deadline(app, 8.0, trusted_networks(trusted))

    @app.get("/left")
    def left() -> object:
        return jsonify(left=deadline.remaining())

    return app


def _left(app: Flask, *, arrived_ago: float | None = None, **headers: str) -> float:
    environ: dict[str, object] = {"REMOTE_ADDR": "10.1.2.3"}
    if arrived_ago is not None:
        environ[ARRIVAL_ENVIRON] = time.monotonic() - arrived_ago
    answer = app.test_client().get("/left", headers=headers, environ_base=environ)
    assert answer.status_code == 200, answer.get_json()
    return float(answer.get_json()["left"])


def test_the_budget_counts_from_the_workers_note_of_arrival() -> None:
    app = _app()
    assert 7.5 < _left(app) <= 8.0
    assert 4.5 < _left(app, arrived_ago=3.0) <= 5.0


def test_the_gateways_start_shortens_the_budget_only_from_a_trusted_proxy() -> None:
    three_s_ago = {START_HEADER: f"t={time.time() - 3.0:.3f}"}
    assert 4.5 < _left(_app("10.0.0.0/8"), **three_s_ago) <= 5.0
    assert 7.5 < _left(_app("192.168.0.0/16"), **three_s_ago) <= 8.0  # not a trusted peer
    assert 7.5 < _left(_app(), **three_s_ago) <= 8.0


def test_a_header_never_extends_the_budget() -> None:
    app = _app("10.0.0.0/8")
    in_the_future = {START_HEADER: f"t={time.time() + 30:.3f}"}
    assert 4.5 < _left(app, arrived_ago=3.0, **in_the_future) <= 5.0
    later_than_arrival = {START_HEADER: f"t={time.time() - 1.0:.3f}"}
    assert 4.5 < _left(app, arrived_ago=3.0, **later_than_arrival) <= 5.0
    for junk in ("t=soon", "", "t=nan", "t=-5"):
        assert 4.5 < _left(app, arrived_ago=3.0, **{START_HEADER: junk}) <= 5.0


def test_a_request_whose_gateway_start_is_older_than_its_budget_is_refused() -> None:
    app = _app("10.0.0.0/8")
    answer = app.test_client().get(
        "/left",
        headers={START_HEADER: f"t={time.time() - 9:.3f}"},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert answer.status_code == 503
    assert answer.get_json()["code"] == "request_expired"
    assert answer.headers["Retry-After"] == str(deadline.RETRY_AFTER_S)
