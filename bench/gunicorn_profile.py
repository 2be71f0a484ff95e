"""Gunicorn settings for benchmarks: ``shopkit.gunicorn_conf`` plus an optional per-worker cProfile.

Use it instead of ``python:shopkit.gunicorn_conf``::

    gunicorn -c bench/gunicorn_profile.py -b 127.0.0.1:5002 'sales_service:create_app()'

Every setting (``gthread``, ``WEB_CONCURRENCY``, ``GUNICORN_THREADS``, timeouts,
the Prometheus multiprocess directory) comes from :mod:`shopkit.gunicorn_conf`
unchanged; shopkit itself knows nothing of profiling.

With ``SHOP_PROFILE_DIR`` set, each worker can profile the requests it serves:

* ``cProfile`` only sees the thread that enabled it, and a ``gthread`` worker
  serves requests on a pool of threads. So each pool thread gets its own
  ``cProfile.Profile``, enabled around one call of the worker's ``handle``
  (HTTP parsing, the Flask app, writing the answer) and disabled between
  requests: idle time and the accept loop are not in the profile.
* Profiling is on while the file ``$SHOP_PROFILE_DIR/active`` exists; a
  watcher thread checks it every 0.2 s. When the file goes away, the worker
  merges its threads' profiles and writes ``$SHOP_PROFILE_DIR/<name>-<pid>.prof``
  (``<name>`` is ``SHOP_PROFILE_NAME``, default ``worker``), then writes
  ``<name>-<pid>.done`` so the driver knows the dump is complete. A worker
  that exits while profiling dumps too.
* ``SHOP_PROFILE_CLOCK=cpu`` times functions by the thread's CPU time
  (``time.thread_time``) instead of the wall clock: waiting for the database,
  another service or a CPU that other processes hold then costs nothing, so
  the profile shows only the Python work itself (useful on a busy machine).

Without ``SHOP_PROFILE_DIR`` no hook does anything and this file is exactly
shopkit's configuration.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import threading
import time
from pathlib import Path
from typing import Any

from shopkit.gunicorn_conf import *  # noqa: F403 (every shared setting, unchanged)
from shopkit.gunicorn_conf import child_exit  # noqa: F401 (re-exported hook)
from shopkit.gunicorn_conf import worker_exit as _shared_worker_exit

PROFILE_DIR_ENV = "SHOP_PROFILE_DIR"
PROFILE_NAME_ENV = "SHOP_PROFILE_NAME"
PROFILE_CLOCK_ENV = "SHOP_PROFILE_CLOCK"
ACTIVE_FILE = "active"
POLL_S = 0.2


class _WorkerProfiler:
    """Per-thread profilers of one worker, switched on and off by the ``active`` file."""

    def __init__(self, directory: Path, name: str, *, cpu_clock: bool = False) -> None:
        self.directory = directory
        self.name = name
        self.cpu_clock = cpu_clock
        self.enabled = False
        self._local = threading.local()
        self._profilers: list[cProfile.Profile] = []
        self._lock = threading.Lock()
        self._in_flight = 0

    def _profiler(self) -> cProfile.Profile:
        profiler = getattr(self._local, "profiler", None)
        if profiler is None:
            profiler = cProfile.Profile(time.thread_time) if self.cpu_clock else cProfile.Profile()
            self._local.profiler = profiler
            with self._lock:
                self._profilers.append(profiler)
        return profiler

    def wrap(self, handle: Any) -> Any:
        """``handle`` run under this thread's profiler while profiling is on."""

        def profiled_handle(*args: Any, **kwargs: Any) -> Any:
            if not self.enabled:
                return handle(*args, **kwargs)
            profiler = self._profiler()
            with self._lock:
                self._in_flight += 1
            profiler.enable()
            try:
                return handle(*args, **kwargs)
            finally:
                profiler.disable()
                with self._lock:
                    self._in_flight -= 1

        return profiled_handle

    def dump(self) -> None:
        """Merge every thread's profile into ``<name>-<pid>.prof`` and start afresh."""
        self.enabled = False
        deadline = time.monotonic() + 5
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._lock:
            profilers, self._profilers = self._profilers, []
            self._local = threading.local()
        stem = self.directory / f"{self.name}-{os.getpid()}"
        stats = None
        for profiler in profilers:
            profiler.create_stats()
            if not profiler.stats:  # type: ignore[attr-defined]
                continue
            if stats is None:
                stats = pstats.Stats(profiler)
            else:
                stats.add(profiler)
        if stats is not None:
            stats.dump_stats(str(stem.with_suffix(".prof")))
        stem.with_suffix(".done").write_text(str(len(profilers)))

    def watch(self) -> None:
        """Follow the ``active`` file forever (a daemon thread)."""
        active = self.directory / ACTIVE_FILE
        while True:
            present = active.exists()
            if present and not self.enabled:
                self.enabled = True
            elif not present and self.enabled:
                self.dump()
            time.sleep(POLL_S)


_profiler: _WorkerProfiler | None = None


def post_worker_init(worker: Any) -> None:
    """Install the request profiler in this worker when ``SHOP_PROFILE_DIR`` is set."""
    global _profiler  # noqa: PLW0603 (one profiler per worker process)
    directory = os.environ.get(PROFILE_DIR_ENV)
    if not directory:
        return
    _profiler = _WorkerProfiler(
        Path(directory),
        os.environ.get(PROFILE_NAME_ENV, "worker"),
        cpu_clock=os.environ.get(PROFILE_CLOCK_ENV, "wall") == "cpu",
    )
    if hasattr(worker, "tpool"):  # gthread: each request is one handle() call on a pool thread
        worker.handle = _profiler.wrap(worker.handle)
    else:  # any other worker class: profile the WSGI application
        worker.wsgi = _profiler.wrap(worker.wsgi)
    threading.Thread(target=_profiler.watch, name="bench-profiler", daemon=True).start()


def worker_exit(server: Any, worker: Any) -> None:
    """Dump what a worker profiled if it exits while profiling is still on, then exit as usual."""
    if _profiler is not None and _profiler.enabled:
        _profiler.dump()
    _shared_worker_exit(server, worker)
