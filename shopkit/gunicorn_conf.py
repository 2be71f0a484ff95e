"""Gunicorn settings shared by the four services (``gunicorn -c python:shopkit.gunicorn_conf``).

``gthread`` workers; the worker and thread counts come from
``WEB_CONCURRENCY`` and ``GUNICORN_THREADS``. Gunicorn's own access log is
off: each service logs one JSON line per request itself, with its request id.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

# Metrics from every worker are pooled here; it must be set before any worker
# imports prometheus_client, which is why it lives in the config module.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="shop-metrics-")

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "5"))
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def child_exit(_server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the pooled metrics."""
    from prometheus_client import multiprocess  # noqa: PLC0415

    multiprocess.mark_process_dead(worker.pid)
