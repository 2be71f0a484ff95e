"""Gunicorn settings shared by the four services (``gunicorn -c python:shopkit.gunicorn_conf``).

``gthread`` workers that answer health checks on threads of their own
(:mod:`shopkit.gunicorn_worker`); the worker and thread counts come from
``WEB_CONCURRENCY`` and ``GUNICORN_THREADS``. A worker dies with its master
(no orphan keeps serving), and each master start gets a fresh, empty
directory for the live faults (:mod:`shopkit.faults`). Gunicorn's own access log is
off: each service logs one JSON line per request itself, with its request id.

The master checks the service's settings before any worker starts: production
mode with insecure secrets stops it with one clear message, and development
warnings are logged once here instead of once per worker. It then imports the
service's code (not its app), which each worker inherits when it is forked. Gunicorn's control
socket is off (every master would bind the same ``~/.gunicorn/gunicorn.ctl``),
the ``Server`` header names no software or version, and the errors gunicorn
answers itself (a malformed request line or header) are problem+json too. A
worker that has drained its requests exits without the interpreter's slow
teardown (:func:`worker_exit`), so stopping a service takes well under a second.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import logging
import os
import signal
import sys
from typing import Any

import gunicorn.http.wsgi
from gunicorn import util

from shopkit.faults import faults_dir
from shopkit.json_provider import encode
from shopkit.process_dirs import own_directory

# Metrics from every worker are pooled here; it must be set before any worker
# imports prometheus_client, which is why it lives in the config module.
own_directory("PROMETHEUS_MULTIPROC_DIR", "shop-metrics-")

# Live faults are shared by this master's workers and forgotten when it restarts, unless
# the directory is given: then a worker process of the service's own (the notifications
# worker) shares them too (devstack.launcher gives it to both). Both directories go when
# the master exits (shopkit.process_dirs).
faults_dir()

_M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter number
MMAP_THRESHOLD_BYTES = 128 * 1024


def _pin_mmap_threshold() -> None:
    """Keep glibc returning big freed blocks to the system (set in the master, forked as is).

    glibc serves blocks above the mmap threshold with ``mmap`` and gives them back
    on ``free``, but by default it raises the threshold to the size of the
    biggest block freed so far. After one Argon2 hash (12 MiB, customers) every
    later one came from a thread's heap and stayed resident: a customers worker
    kept tens of MiB more after a burst of logins (bench/README.md). Pinning the
    threshold at its default disables that. ``MALLOC_MMAP_THRESHOLD_`` set in the
    environment wins; other C libraries are left alone.
    """
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


_pin_mmap_threshold()

worker_class = "shopkit.gunicorn_worker.HealthFirstWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "5"))
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
control_socket_disable = True

gunicorn.http.wsgi.SERVER = "shop"  # read by each response; default "gunicorn"


def _problem_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """Gunicorn's own error answers (bad request line or header) as problem+json, not HTML."""
    code = {400: "bad_request", 403: "forbidden", 414: "uri_too_long", 431: "headers_too_large"}
    body = encode(
        {
            "type": "https://shop.example/problems/" + code.get(status_int, "http_error"),
            "title": reason,
            "status": status_int,
            "detail": mesg or reason,
            "code": code.get(status_int, "http_error"),
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin1") + body)


util.write_error = _problem_error


def on_starting(server: Any) -> None:
    """Check the service's settings once, in the master, before any worker starts; then
    import the app's code there, so that every worker is forked with it loaded.

    Production mode with insecure secrets raises :class:`~shopkit.config.InsecureConfiguration`,
    a ``RuntimeError``, which gunicorn prints as one ``Error:`` line before exiting 1.
    """
    from shopkit.config import CHECKED_MARKER, Settings  # noqa: PLC0415

    app_uri = str(getattr(server.app, "app_uri", "") or "")
    module = app_uri.split(":", 1)[0]
    if module:
        Settings.from_env(module.removesuffix("_service"))
        os.environ[CHECKED_MARKER] = "1"  # the workers inherit it and stay quiet
        _import_app_code(module)


def _import_app_code(module: str) -> None:
    """Import the app's package (not the app: no database pool, thread or socket yet).

    Importing a service's code is most of the CPU a worker's start takes. Done
    once in the master, it is shared by every worker forked from it:
    a worker that replaces a dead one serves sooner, and a service starts with
    one import instead of one per worker. The app itself is still made in each
    worker (``preload_app`` stays off), so nothing the app opens is shared
    across a fork. Metric values made at import are fork-safe in
    prometheus_client's multiprocess mode (each process writes its own files).
    Should the import fail, each worker fails the same way and gunicorn reports
    it as usual.
    """
    try:
        importlib.import_module(module)
    except Exception:  # the workers import it again and report the error
        logging.getLogger(__name__).debug("%s left for the workers to import", module)


_PR_SET_PDEATHSIG = 1  # prctl(2)


def post_fork(_server: Any, worker: Any) -> None:
    """Have the kernel SIGKILL this worker the moment its master dies (Linux).

    Without it an orphaned gthread worker notices only on its next loop turn
    and then drains its requests for up to ``graceful_timeout``, serving
    meanwhile; its in-flight sales are settled by recovery like any crash.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: gunicorn's own parent check remains
        return
    if os.getppid() != worker.ppid:  # the master died before prctl took effect
        os._exit(1)


def worker_exit(_server: Any, worker: Any) -> None:
    """A worker that finished serving normally leaves at once, skipping interpreter teardown.

    Once gunicorn has drained a worker's requests, tearing down the interpreter
    (every module, every object, one by one) is seconds of CPU per worker; with
    ten workers on two busy cores it made Ctrl-C on ``make run`` take up to ten
    seconds. So the log handlers and any pending trace spans are flushed and the
    worker exits with status 0 right away. A worker leaving with an error (it
    could not boot, or crashed) keeps gunicorn's usual exit and its status.
    """
    leaving = sys.exc_info()[1]  # the SystemExit on its way out of gunicorn's spawn_worker
    if not (worker.booted and isinstance(leaving, SystemExit) and leaving.code in (0, None)):
        return
    from opentelemetry import trace  # noqa: PLC0415

    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if flush is not None:  # the SDK's provider, when tracing is on
        flush(2000)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def child_exit(_server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the pooled metrics."""
    from prometheus_client import multiprocess  # noqa: PLC0415

    multiprocess.mark_process_dead(worker.pid)
