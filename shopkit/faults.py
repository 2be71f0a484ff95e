"""Faults you can switch on live: latency, errors, hangs and crashes, for demos and tests.

``GET``/``PUT``/``DELETE /admin/faults`` (admin only) read, replace and clear
the service's fault set. A fault applies to one of:

* ``route`` — incoming requests whose ``"METHOD /path"`` starts with it
  (``"POST /sales"``, ``"/products"``): ``latency``, ``error`` (an answer
  with ``status``, 503 by default) or ``hang`` (``hang_s`` of silence);
* ``dependency`` — this service's outgoing calls to another service
  (``"inventory"``): ``latency``, ``error`` (the attempt fails like a refused
  connection) or ``hang`` (the attempt times out);
* ``after_step`` — sales only: ``crash`` the worker (``os._exit``) right after
  the named saga step's answer arrived (``reserve``, ``debit``, ``release``,
  ``refund``, ``return``), before anything is committed.

``rate`` (0-1, default 1) makes a fault hit only that share of the time.

Where the set lives: a JSON file in a directory the gunicorn master creates
when it starts (``SHOP_FAULTS_DIR``, see :mod:`shopkit.gunicorn_conf`). Every
worker of the service reads it, re-reading only when the file changed (one
``stat`` per check), so a change reaches all workers at once; it needs no
database (faults keep working while the database is the thing that is down);
and a restarted service starts with none. Every change is logged. With
``SHOP_ENV=production`` the endpoints answer 403 and no fault ever applies.
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import urllib3
from flask import Flask, current_app, request
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from shopkit.auth import ROLE_ADMIN, require_principal, requires
from shopkit.errors import ProblemError

log = logging.getLogger(__name__)

KINDS = ("latency", "error", "hang", "crash")
#: Paths a route fault never touches, so faults can always be inspected and switched off.
EXEMPT_PREFIXES = ("/admin/faults", "/healthz", "/readyz", "/metrics")
MAX_FAULTS = 20


def production() -> bool:
    """True in production mode (``SHOP_ENV=production``), where faults are refused."""
    return os.environ.get("SHOP_ENV", "").strip().lower() == "production"


class FaultSchema(Schema):
    """One fault: what it does, where it applies and how often."""

    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    route = fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": 'Incoming requests starting with this "METHOD /path".'},
    )
    dependency = fields.String(
        validate=validate.OneOf(("customers", "inventory", "sales", "reviews")),
        metadata={"description": "Outgoing calls to this service."},
    )
    after_step = fields.String(
        validate=validate.OneOf(("reserve", "debit", "release", "refund", "return")),
        metadata={"description": "Sales: crash right after this saga step's answer."},
    )
    latency_ms = fields.Integer(validate=validate.Range(min=1, max=60_000))
    hang_s = fields.Float(validate=validate.Range(min=0.1, max=120), load_default=30.0)
    status = fields.Integer(validate=validate.Range(min=500, max=599), load_default=503)
    rate = fields.Float(validate=validate.Range(min=0, max=1), load_default=1.0)

    @validates_schema
    def _one_target(self, data: dict[str, Any], **_kwargs: Any) -> None:
        targets = [name for name in ("route", "dependency", "after_step") if name in data]
        if len(targets) != 1:
            raise ValidationError("Give exactly one of route, dependency, after_step.", "_schema")
        if (data["kind"] == "crash") != ("after_step" in data):
            raise ValidationError("A crash applies after a saga step, and only a crash does.")
        if data["kind"] == "latency" and "latency_ms" not in data:
            raise ValidationError("A latency fault needs latency_ms.", "latency_ms")


class FaultSetSchema(Schema):
    """The service's whole fault set."""

    faults = fields.List(
        fields.Nested(FaultSchema), required=True, validate=validate.Length(max=MAX_FAULTS)
    )


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


_store: FaultStore | None = None


def faults_dir() -> Path:
    """``SHOP_FAULTS_DIR`` (set by the gunicorn master), or one directory for this process."""
    configured = os.environ.get("SHOP_FAULTS_DIR")
    if not configured:
        configured = tempfile.mkdtemp(prefix="shop-faults-")
        os.environ["SHOP_FAULTS_DIR"] = configured
    return Path(configured)


def _active(fault_store: FaultStore | None, **target: str) -> list[dict[str, Any]]:
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
    for fault in _active(_store, dependency=dependency):
        kind = fault["kind"]
        if kind == "latency":
            delay = fault["latency_ms"] / 1000
            time.sleep(min(delay, attempt_timeout_s))
            if delay >= attempt_timeout_s:
                raise urllib3.exceptions.TimeoutError(f"injected latency on {method} {path}")
        elif kind == "error":
            raise urllib3.exceptions.ProtocolError(f"injected error on {method} {path}")
        elif kind == "hang":
            time.sleep(min(fault["hang_s"], attempt_timeout_s))
            raise urllib3.exceptions.TimeoutError(f"injected hang on {method} {path}")


def crash_after(step: str) -> bool:
    """Whether a live fault asks the worker to crash right after saga step ``step``."""
    return bool(_active(_store, after_step=step))


def _app_store() -> FaultStore | None:
    return current_app.extensions.get("shop_faults")  # type: ignore[no-any-return]


def _apply_route_faults() -> None:
    if request.path.startswith(EXEMPT_PREFIXES):
        return
    for fault in _active(_app_store(), route=f"{request.method} {request.path}"):
        kind = fault["kind"]
        if kind == "latency":
            time.sleep(fault["latency_ms"] / 1000)
        elif kind == "hang":
            time.sleep(fault["hang_s"])
        elif kind == "error":
            raise ProblemError(
                fault["status"],
                "injected_fault",
                "A fault switched on at /admin/faults answered this request.",
                headers={"Retry-After": "1"},
            )


faults_blp = Blueprint(
    "faults",
    __name__,
    url_prefix="/admin",
    description="Faults switched on live for demos and resilience tests (never in production).",
)


def _writable_store() -> FaultStore:
    fault_store = _app_store()
    if production() or fault_store is None:
        raise ProblemError(403, "faults_disabled", "Fault injection is off in production mode.")
    return fault_store


@faults_blp.route("/faults", methods=["GET"])
@faults_blp.response(200, FaultSetSchema)
@faults_blp.alt_response(403, description="`faults_disabled` in production mode, or not admin.")
@requires(ROLE_ADMIN)
def get_faults() -> ResponseReturnValue:
    """The faults switched on in this service (admin)."""
    return {"faults": _writable_store().faults()}


@faults_blp.route("/faults", methods=["PUT"])
@faults_blp.response(200, FaultSetSchema)
@faults_blp.alt_response(403, description="`faults_disabled` in production mode, or not admin.")
@requires(ROLE_ADMIN)
@faults_blp.arguments(FaultSetSchema())
def put_faults(data: dict[str, Any]) -> ResponseReturnValue:
    """Replace this service's fault set, for every worker at once (admin)."""
    fault_store = _writable_store()
    fault_store.replace(data["faults"])
    log.warning("faults set by %s: %s", require_principal().subject, json.dumps(data["faults"]))
    return {"faults": fault_store.faults()}


@faults_blp.route("/faults", methods=["DELETE"])
@faults_blp.response(204)
@faults_blp.alt_response(403, description="`faults_disabled` in production mode, or not admin.")
@requires(ROLE_ADMIN)
def delete_faults() -> ResponseReturnValue:
    """Switch every fault of this service off (admin)."""
    _writable_store().replace([])
    log.warning("faults cleared by %s", require_principal().subject)
    return "", 204


def init_faults(app: Flask, service: str) -> None:
    """Make the process's fault store and apply route faults before each request.

    In production mode there is no store: nothing is ever injected.
    """
    global _store  # noqa: PLW0603 (the process's service: its outgoing calls and saga steps)
    if production():
        _store = None
        return
    _store = FaultStore(faults_dir() / f"{service}.json")
    app.extensions["shop_faults"] = _store
    app.before_request(_apply_route_faults)
