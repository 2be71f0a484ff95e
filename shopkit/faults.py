"""The faults engine: latency, errors, hangs and crashes injected into a running service.

A fault applies to one of:

* ``route`` — incoming requests whose ``"METHOD /path"`` starts with it
  (``"POST /sales"``, ``"/products"``): ``latency``, ``error`` (an answer
  with ``status``, 503 by default) or ``hang`` (``hang_s`` of silence);
* ``dependency`` — this service's outgoing calls to another service
  (``"inventory"``): ``latency``, ``error`` (the attempt fails like a refused
  connection) or ``hang`` (the attempt times out); or to the event broker
  (``"broker"``): the relay's ``XADD`` pipeline (``operation: "publish"``) and a
  consumer's reads and acknowledgements (``"consume"``), both when no
  ``operation`` is given. A broker fault fails like the client would
  (``redis.ConnectionError``, ``redis.TimeoutError``), and a hang or a long
  latency lasts at most the client's socket timeout, like a real one. Only
  the relay and consumer threads feel it: nothing in a request waits for the
  broker;
* ``after_step`` — a named crash point of the service's own code: ``crash``
  the process (``os._exit``). Sales: right after a saga step's answer
  arrived, before anything is committed. The events library
  (:data:`EVENT_CRASH_POINTS`): ``publish`` (the relay's ``XADD`` pipeline
  succeeded, the rows are not yet marked published), ``apply`` (a consumer's
  handler ran, its transaction is not committed) and ``commit`` (a consumer
  committed, it has not acknowledged).

``rate`` (0-1, default 1) makes a fault hit only that share of the time.

Faults are switched on live through ``/admin/faults``
(:mod:`shopkit.fault_routes`). A crash can also be armed for the whole life of
a process by ``SALES_CRASH_AFTER=<point>`` in its environment, read when the
service installs its faults.

Where the live set lives: a JSON file in a directory the gunicorn master
creates when it starts (``SHOP_FAULTS_DIR``, see :mod:`shopkit.gunicorn_conf`).
Every worker of the service reads it, re-reading only when the file changed
(one ``stat`` per check), so a change reaches all workers at once; it needs no
database (faults keep working while the database is the thing that is down);
and a restarted service starts with none. A service's worker process outside
gunicorn (the notifications worker) shares the service's set when both get
the same ``SHOP_FAULTS_DIR`` (the launcher and the fault suite do that).
With ``SHOP_ENV=production`` no fault ever applies. This module holds no web
code: it is what the service client, the route hook, the events library and
domain code consult.
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import urllib3

from shopkit.process_dirs import own_directory

log = logging.getLogger(__name__)

KINDS = ("latency", "error", "hang", "crash")
#: The exit status of a worker that an injected crash ended.
CRASH_EXIT_STATUS = 70
#: The event broker, as a fault's ``dependency`` (beside the registry's services).
BROKER = "broker"
#: What a broker fault can be limited to: the relay's publishing, or a consumer's calls.
BROKER_OPERATIONS = ("publish", "consume")
#: The events library's crash points (:mod:`shopkit.events.relay`, :mod:`shopkit.events.consumer`).
EVENT_CRASH_POINTS = ("publish", "apply", "commit")


def production() -> bool:
    """True in production mode (``SHOP_ENV=production``), where faults are refused."""
    return os.environ.get("SHOP_ENV", "").strip().lower() == "production"


#: Arms a crash point for the life of a process (chaos tests: ``SALES_CRASH_AFTER=debit``).
CRASH_AFTER_ENV = "SALES_CRASH_AFTER"


class FaultStore:
    """The fault set of one service, in a JSON file shared by its worker processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._faults: list[dict[str, Any]] = []

    def faults(self) -> list[dict[str, Any]]:
        """The current set (re-read only when the file changed)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        signature = (stat.st_ino, stat.st_mtime_ns)
        if signature != self._seen:
            with self._lock:
                try:
                    self._faults = json.loads(self.path.read_text()).get("faults", [])
                except (OSError, ValueError):
                    self._faults = []
                self._seen = signature
        return self._faults

    def replace(self, faults: list[dict[str, Any]]) -> None:
        """Atomically replace the set (an empty list clears it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".faults-")
        with os.fdopen(fd, "w") as handle:
            json.dump({"faults": faults}, handle)
        os.replace(tmp, self.path)


@dataclass(frozen=True)
class _Installed:
    """The process's faults: its service's live set, and the crash point armed at start-up."""

    store: FaultStore
    crash_at_start: str | None


_installed: _Installed | None = None


def faults_dir() -> Path:
    """``SHOP_FAULTS_DIR`` (set by the gunicorn master), or one directory for this process,
    removed when it exits."""
    return Path(own_directory("SHOP_FAULTS_DIR", "shop-faults-"))


def install(service: str) -> FaultStore | None:
    """Make this process's fault store for ``service`` and read its start-up crash point.

    In production mode there is none (``None``): nothing is ever injected.
    """
    global _installed  # noqa: PLW0603 (the process's service: its calls, routes and crash points)
    if production():
        _installed = None
        return None
    crash_at_start = os.environ.get(CRASH_AFTER_ENV) or None
    _installed = _Installed(FaultStore(faults_dir() / f"{service}.json"), crash_at_start)
    return _installed.store


def active(fault_store: FaultStore | None, **target: str) -> list[dict[str, Any]]:
    """The faults of ``fault_store`` aimed at ``target`` (one of ``route=``, ``dependency=``,
    ``after_step=``) that hit this time (each by its ``rate``)."""
    if fault_store is None:
        return []
    ((key, value),) = target.items()
    hits = []
    for fault in fault_store.faults():
        wanted = fault.get(key)
        if wanted is None:
            continue
        if key == "route" and not _route_matches(wanted, value):
            continue
        if key != "route" and wanted != value:
            continue
        if fault.get("rate", 1.0) >= 1.0 or random.random() < fault["rate"]:  # noqa: S311
            hits.append(fault)
    return hits


def _route_matches(wanted: str, method_and_path: str) -> bool:
    if wanted.startswith("/"):
        return method_and_path.split(" ", 1)[1].startswith(wanted)
    return method_and_path.startswith(wanted.upper() if " " not in wanted else wanted)


def before_outgoing(dependency: str, method: str, path: str, attempt_timeout_s: float) -> None:
    """Apply faults on calls to ``dependency``: sleep, or raise as a failed attempt would."""
    store = _installed.store if _installed is not None else None
    for fault in active(store, dependency=dependency):
        _inject(
            fault,
            attempt_timeout_s,
            f"{method} {path}",
            timeout=urllib3.exceptions.TimeoutError,
            failure=urllib3.exceptions.ProtocolError,
        )


def before_broker(operation: str, timeout_s: float | None) -> None:
    """Apply ``broker`` faults on ``operation`` (one of :data:`BROKER_OPERATIONS`): sleep,
    or raise as a failed broker call would.

    ``timeout_s`` is the client's socket timeout: a hang, or a latency at least that
    long, waits that long and then fails as a timed-out call (``redis.TimeoutError``);
    an error fails at once (``redis.ConnectionError``).
    """
    store = _installed.store if _installed is not None else None
    for fault in active(store, dependency=BROKER):
        if fault.get("operation", operation) == operation:
            bound = timeout_s if timeout_s is not None else float("inf")
            _inject(
                fault,
                bound,
                f"the broker ({operation})",
                timeout=redis.TimeoutError,
                failure=redis.ConnectionError,
            )


def _inject(
    fault: dict[str, Any],
    bound_s: float,
    what: str,
    *,
    timeout: type[Exception],
    failure: type[Exception],
) -> None:
    """One dependency fault: its latency or hang (at most ``bound_s``), or its error."""
    kind = fault["kind"]
    if kind == "latency":
        delay = fault["latency_ms"] / 1000
        time.sleep(min(delay, bound_s))
        if delay >= bound_s:
            raise timeout(f"injected latency on {what}")
    elif kind == "error":
        raise failure(f"injected error on {what}")
    elif kind == "hang":
        time.sleep(min(fault["hang_s"], bound_s))
        raise timeout(f"injected hang on {what}")


def crash_point(point: str) -> None:
    """A named crash point: end the process at once (``os._exit``, nothing flushed or
    committed) if a crash is armed here, at start-up or live; otherwise do nothing."""
    if _installed is None:
        return
    armed_at_start = _installed.crash_at_start == point
    if armed_at_start or active(_installed.store, after_step=point):
        how = CRASH_AFTER_ENV if armed_at_start else "a live fault"
        log.critical("injected crash: exiting after %s as %s asks", point, how)
        os._exit(CRASH_EXIT_STATUS)
