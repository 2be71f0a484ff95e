"""The live fault switches: ``/admin/faults`` and the faults applied to incoming requests.

``GET``/``PUT``/``DELETE /admin/faults`` (admin only) read, replace and clear
the service's fault set (what a fault can be: :mod:`shopkit.faults`). Every
change is logged. With ``SHOP_ENV=production`` the endpoints answer 403 and no
fault ever applies.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from flask import Flask, current_app, request
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from shopkit import faults
from shopkit.auth import ROLE_ADMIN, require_principal, requires
from shopkit.errors import ProblemError
from shopkit.registry import SERVICE_NAMES

log = logging.getLogger(__name__)

#: Sales' saga steps, each a crash point right after its answer (:mod:`sales_service.saga`).
SAGA_STEPS = ("record", "reserve", "debit", "release", "refund", "return")
#: Paths a route fault never touches, so faults can always be inspected and switched off.
EXEMPT_PREFIXES = ("/admin/faults", "/healthz", "/readyz", "/metrics")
MAX_FAULTS = 20


class FaultSchema(Schema):
    """One fault: what it does, where it applies and how often."""

    kind = fields.String(required=True, validate=validate.OneOf(faults.KINDS))
    route = fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": 'Incoming requests starting with this "METHOD /path".'},
    )
    dependency = fields.String(
        validate=validate.OneOf((*SERVICE_NAMES, faults.BROKER)),
        metadata={"description": "Outgoing calls to this service, or to the event broker."},
    )
    operation = fields.String(
        validate=validate.OneOf(faults.BROKER_OPERATIONS),
        metadata={
            "description": "The broker only: the relay's publishing or a consumer's reads and "
            "acks (both when not given)."
        },
    )
    after_step = fields.String(
        validate=validate.OneOf((*SAGA_STEPS, *faults.EVENT_CRASH_POINTS)),
        metadata={
            "description": "Crash right after this point: a saga step's answer (sales); the "
            "relay's publish, a consumer's apply (before its commit) or commit (before its ack)."
        },
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
            raise ValidationError("A crash applies after a crash point, and only a crash does.")
        if "operation" in data and data.get("dependency") != faults.BROKER:
            raise ValidationError("Only a broker fault has an operation.", "operation")
        if data["kind"] == "latency" and "latency_ms" not in data:
            raise ValidationError("A latency fault needs latency_ms.", "latency_ms")


class FaultSetSchema(Schema):
    """The service's whole fault set."""

    faults = fields.List(
        fields.Nested(FaultSchema), required=True, validate=validate.Length(max=MAX_FAULTS)
    )


def _app_store() -> faults.FaultStore | None:
    return current_app.extensions.get("shop_faults")


def _apply_route_faults() -> None:
    if request.path.startswith(EXEMPT_PREFIXES):
        return
    for fault in faults.active(_app_store(), route=f"{request.method} {request.path}"):
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


def _writable_store() -> faults.FaultStore:
    fault_store = _app_store()
    if faults.production() or fault_store is None:
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
    """Install the process's faults for ``service`` (:func:`shopkit.faults.install`) and
    apply route faults before each request.

    In production mode there is no store: nothing is ever injected.
    """
    fault_store = faults.install(service)
    if fault_store is None:
        return
    app.extensions["shop_faults"] = fault_store
    app.before_request(_apply_route_faults)
