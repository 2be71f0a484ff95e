"""The system page's fault switches: a fault from the form, and a fault in words.

Each service's ``/admin/faults`` (:mod:`shopkit.fault_routes`) holds a whole set;
``PUT`` replaces it. Switching one fault on reads the set, adds the new one
and puts the set back; switching one off puts the set back without it (found
by its content, not its position, so a set that changed since the page was
drawn loses the right one). Two admins writing in the same instant can still
overwrite each other: the API has no compare-and-set, and this is a demo and
test tool. The services validate every fault again and their refusals (422
per field, 403 ``faults_disabled`` in production mode) are shown as they are.
"""

from __future__ import annotations

import json
from typing import Any

from shopkit import faults
from shopkit.fault_routes import SAGA_STEPS
from storefront.clients import SERVICES
from storefront.forms import FaultForm

#: What the events' crash points (:data:`shopkit.faults.EVENT_CRASH_POINTS`) are, in words: a
#: relay's, a consumer's two. A service crashes only at the points it has.
_CRASH_POINT_WORDS = {
    "publish": "right after its relay published, before it marked the rows",
    "apply": "right after a consumer applied a batch, before its commit",
    "commit": "right after a consumer committed, before its ack",
}
EVENT_CRASH_POINTS = {
    point: _CRASH_POINT_WORDS.get(point, f"at the events' {point} crash point")
    for point in faults.EVENT_CRASH_POINTS
}
#: What the broker's operations (:data:`shopkit.faults.BROKER_OPERATIONS`) are, in words.
_OPERATION_WORDS = {
    "publish": "when the relay publishes",
    "consume": "when a consumer reads or acknowledges",
}
#: The broker as a dependency: all its calls, or only those of one operation.
BROKER_TARGETS = {
    faults.BROKER: "calls to the broker (publishing and consuming)",
    **{
        f"{faults.BROKER}:{operation}": f"the broker, {_OPERATION_WORDS.get(operation, operation)}"
        for operation in faults.BROKER_OPERATIONS
    },
}
KIND_LABELS = {
    "latency": "latency (a delay)",
    "error": "error (a 5xx answer, a failed call)",
    "hang": "hang (silence until a timeout)",
    "crash": "crash (the worker exits)",
}


class FaultInputError(ValueError):
    """The form does not describe a fault the service would accept (the message says why)."""


def fault_form(service: str, submitted: bool = False) -> FaultForm:
    """The switch-on form of ``service``: its targets; ids and names start ``fault-<service>-``.

    ``submitted`` reads the request's form data; otherwise the form is empty, to render.
    """
    prefix = f"fault-{service}"
    form = FaultForm(prefix=prefix) if submitted else FaultForm(prefix=prefix, formdata=None)
    targets = [("route", "requests to the route below")]
    targets += [(f"dependency:{name}", f"calls to {name}") for name in SERVICES if name != service]
    targets += list(BROKER_TARGETS.items())
    if service == "sales":
        targets += [(f"after_step:{step}", f"right after the {step} step") for step in SAGA_STEPS]
    targets += [(f"after_step:{point}", label) for point, label in EVENT_CRASH_POINTS.items()]
    form.target.choices = targets
    form.kind.choices = list(KIND_LABELS.items())
    return form


def fault_from_form(form: FaultForm) -> dict[str, Any]:
    """The ``/admin/faults`` item the (validated) form describes, or :class:`FaultInputError`."""
    kind = str(form.kind.data)
    target = str(form.target.data)
    fault: dict[str, Any] = {"kind": kind, "rate": float(form.rate.data or 0)}
    if target == "route":
        route = (form.route.data or "").strip()
        if not route:
            raise FaultInputError('Give the route, e.g. "POST /sales" or "/products".')
        fault["route"] = route
    elif target in BROKER_TARGETS:
        dependency, _, operation = target.partition(":")
        fault["dependency"] = dependency
        if operation:
            fault["operation"] = operation
    else:
        key, _, value = target.partition(":")
        fault[key] = value
    if (kind == "crash") != ("after_step" in fault):
        raise FaultInputError(
            "A crash applies right after a saga step or at an events crash point, "
            "and only a crash does."
        )
    if kind == "latency":
        if not form.latency_ms.data:
            raise FaultInputError("A latency fault needs its latency in milliseconds.")
        fault["latency_ms"] = int(form.latency_ms.data)
    elif kind == "hang" and form.hang_s.data:
        fault["hang_s"] = float(form.hang_s.data)
    elif kind == "error" and form.status.data and "route" in fault:
        fault["status"] = int(form.status.data)
    return fault


def fingerprint(fault: dict[str, Any]) -> str:
    """A fault's identity on the page (its whole content, keys sorted)."""
    return json.dumps(fault, sort_keys=True, separators=(",", ":"))


def without(faults: list[dict[str, Any]], print_: str) -> list[dict[str, Any]] | None:
    """``faults`` less the first one whose :func:`fingerprint` is ``print_`` (None: not there)."""
    for index, fault in enumerate(faults):
        if fingerprint(fault) == print_:
            return faults[:index] + faults[index + 1 :]
    return None


def describe_fault(fault: dict[str, Any]) -> str:
    """One fault in words: ``latency 500 ms on requests to POST /sales, 20% of the time``."""
    kind = str(fault.get("kind", "?"))
    if kind == "latency":
        what = f"latency {fault.get('latency_ms', '?')} ms"
    elif kind == "hang":
        what = f"hang {fault.get('hang_s', 30):g} s"
    elif kind == "error":
        what = f"error {fault.get('status', 503)}" if "route" in fault else "error"
    else:
        what = kind
    if "route" in fault:
        where = f"on requests to {fault['route']}"
    elif "dependency" in fault:
        where = f"on calls to {fault['dependency']}"
        if "operation" in fault:
            where += f" ({fault['operation']})"
    elif "after_step" in fault:
        where = f"right after the {fault['after_step']} step"
    else:
        where = "(no target)"
    rate = float(fault.get("rate", 1.0))
    how_often = "always" if rate >= 1 else f"{rate:.0%} of the time"
    return f"{what} {where}, {how_often}"
