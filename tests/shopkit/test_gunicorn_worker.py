"""The health-first gunicorn worker's budget for queued requests and its bookkeeping of
connections handed over to a receiver."""

from __future__ import annotations

import logging
import os
import socket
from concurrent import futures
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from gunicorn.config import Config
from gunicorn.workers.gthread import TConn, ThreadWorker

from shopkit.deadline import init_deadline
from shopkit.gunicorn_worker import HandedOver, HealthFirstWorker


def _worker() -> HealthFirstWorker:
    cfg = Config()
    return HealthFirstWorker(0, os.getpid(), [], None, 30, cfg, logging.getLogger("test"))


def _done(result: Any) -> futures.Future[Any]:
    future: futures.Future[Any] = futures.Future()
    future.set_result(result)
    return future


def test_a_handed_over_connection_is_counted_gone_once(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = _worker()
    ours, peer = socket.socketpair()
    conn = TConn(worker.cfg, ours, ("127.0.0.1", 0), None)
    worker.nr_conns = 1

    def hand_over(_self: Any, _req: Any, _conn: Any) -> bool:
        socket.socket(fileno=ours.detach()).close()  # as _hand_over: the receiver owns it
        raise HandedOver

    monkeypatch.setattr(ThreadWorker, "handle_request", hand_over)
    try:
        assert worker.handle_request(None, conn) is False
        worker.finish_request(conn, _done(False))
        assert worker.nr_conns == 0
    finally:
        peer.close()


def test_a_connection_done_with_is_closed_and_counted_gone_once() -> None:
    worker = _worker()
    ours, peer = socket.socketpair()
    conn = TConn(worker.cfg, ours, ("127.0.0.1", 0), None)
    worker.nr_conns = 1
    try:
        worker.finish_request(conn, _done(False))
        assert worker.nr_conns == 0
        assert ours.fileno() == -1
    finally:
        peer.close()


def test_a_queued_request_may_wait_the_budget_the_app_was_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUEST_DEADLINE", "7.0")  # the app's settings decide, not this
    app = Flask(__name__)
    init_deadline(app, 2.5)
    worker = _worker()
    worker.app = SimpleNamespace(wsgi=lambda: app)
    worker.load_wsgi()
    assert worker.budget_s == 2.5
