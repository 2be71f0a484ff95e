"""The live system page's figures, from each service's ``/readyz``, ``/metrics`` and APIs.

Metrics are parsed with prometheus_client's own text parser. Rates need two
readings: the last reading of each service is kept in this process, and a
rate is the change since then divided by the time between them (the page
refreshes every few seconds). Business metrics (``shop_*``) come from the
observability work; where a service does not export them yet the page says
so and falls back to what exists (HTTP request counters, the sales API).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from shopkit.service_client import DependencyUnavailable
from storefront.clients import SERVICES, ApiProblem, ShopApi

Sample = tuple[str, tuple[tuple[str, str], ...]]
#: Samples that show sales exports the business metrics (sales_service.metrics).
BUSINESS_PREFIXES = ("shop_sales", "shop_recover")


@dataclass
class ServiceStatus:
    """What the system page shows for one service."""

    name: str
    ready: bool
    detail: str
    requests_per_s: float | None = None
    errors_per_s: float | None = None
    #: The live faults (``None``: not read, or the service has no ``/admin/faults``).
    faults: list[dict[str, Any]] | None = None
    faults_available: bool = False
    #: Why the faults could not be read (e.g. 403 ``faults_disabled`` in production mode).
    faults_problem: str | None = None


@dataclass
class SystemView:
    """Everything on the system page."""

    services: list[ServiceStatus] = field(default_factory=list)
    sales_per_s: dict[str, float] | None = None
    sales_source: str = ""
    pending: int | None = None
    cancelling: int | None = None
    #: Age in seconds of the oldest unsettled sale, by status (``{}`` when unknown).
    oldest_s: dict[str, float] = field(default_factory=dict)
    pending_source: str = ""
    recoveries: dict[str, float] | None = None
    recovery_runs: int | None = None
    notes: list[str] = field(default_factory=list)


def parse_counters(text: str) -> dict[Sample, float]:
    """Every sample of a Prometheus text document, keyed by name and sorted labels."""
    values: dict[Sample, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return values


def total_by(values: dict[Sample, float], name: str, label: str) -> dict[str, float]:
    """Sum the samples named ``name`` by the value of ``label``."""
    sums: dict[str, float] = {}
    for (sample, labels), value in values.items():
        if sample != name:
            continue
        key = dict(labels).get(label, "")
        sums[key] = sums.get(key, 0.0) + value
    return sums


class RateTracker:
    """The previous reading of each service, to turn counters into per-second rates."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, dict[Sample, float]]] = {}
        self._lock = threading.Lock()

    def rates(self, service: str, values: dict[Sample, float]) -> dict[Sample, float] | None:
        """Change per second of every sample since the last reading (``None`` on the first)."""
        now = time.monotonic()
        with self._lock:
            previous = self._last.get(service)
            self._last[service] = (now, values)
        if previous is None or now - previous[0] < 0.5:
            return None
        elapsed = now - previous[0]
        return {
            key: max(0.0, value - previous[1].get(key, 0.0)) / elapsed
            for key, value in values.items()
        }


def _sum(rates: dict[Sample, float], name: str, status_prefix: Iterable[str] = ()) -> float:
    prefixes = tuple(status_prefix)
    total = 0.0
    for (sample, labels), value in rates.items():
        if sample != name:
            continue
        if prefixes and not dict(labels).get("status", "").startswith(prefixes):
            continue
        total += value
    return total


def collect(api: ShopApi, admin_token: str, tracker: RateTracker) -> SystemView:
    """Read every service once and build the page (a service that is down is just shown down)."""
    view = SystemView()
    sales_values: dict[Sample, float] | None = None
    sales_rates: dict[Sample, float] | None = None
    for name in SERVICES:
        status = _readiness(api, name)
        try:
            values = parse_counters(api.metrics(name))
        except (ApiProblem, DependencyUnavailable, ValueError):
            values = None
        if values is not None:
            rates = tracker.rates(name, values)
            if rates is not None:
                status.requests_per_s = _sum(rates, "flask_http_request_total")
                status.errors_per_s = _sum(rates, "flask_http_request_total", ("5",))
            if name == "sales":
                sales_values, sales_rates = values, rates
        if status.ready:
            _read_faults(api, admin_token, status)
        view.services.append(status)
    _sales_figures(api, admin_token, view, sales_values, sales_rates)
    return view


def _read_faults(api: ShopApi, admin_token: str, status: ServiceStatus) -> None:
    try:
        found = api.faults(admin_token, status.name)
    except ApiProblem as exc:
        status.faults_problem = exc.message()
    except DependencyUnavailable as exc:
        status.faults_problem = exc.detail
    else:
        status.faults_available = found is not None
        status.faults = list(found.get("faults") or []) if found is not None else None


def _readiness(api: ShopApi, name: str) -> ServiceStatus:
    try:
        code, body = api.readiness(name)
    except DependencyUnavailable:
        return ServiceStatus(name, False, "unreachable")
    if code == 200:
        return ServiceStatus(name, True, f"ready (schema {body.get('schema_revision', '?')})")
    return ServiceStatus(name, False, str(body.get("detail") or f"/readyz answered {code}"))


def _sales_figures(
    api: ShopApi,
    admin_token: str,
    view: SystemView,
    values: dict[Sample, float] | None,
    rates: dict[Sample, float] | None,
) -> None:
    """Sales per second by outcome, unsettled sales and recoveries (metrics first, then the API).

    The ``shop_*`` counters appear in ``/metrics`` only once something counted
    (several workers pool their samples), so any ``shop_sales*`` or
    ``shop_recovery*`` sample means the business metrics are exported and a
    missing counter means zero, not "fall back".
    """
    names = {sample for sample, _ in (values or {})}
    business = any(name.startswith(BUSINESS_PREFIXES) for name in names)
    if business:
        view.sales_source = "shop_sales_total"
        if rates is not None:
            view.sales_per_s = _outcome_rates(rates)
    elif values is not None:
        view.sales_source = "HTTP answers of POST /sales and checkout (no shop_sales_total yet)"
        if rates is not None:
            view.sales_per_s = _purchase_rates(rates)
        view.notes.append("sales does not export shop_* business metrics yet.")
    if "shop_sales_pending" in names:
        found = total_by(values or {}, "shop_sales_pending", "status")
        view.pending = int(found.get("pending", 0))
        view.cancelling = int(found.get("cancelling", 0))
        view.oldest_s = total_by(values or {}, "shop_sales_oldest_pending_age_seconds", "status")
        view.pending_source = "shop_sales_pending"
    else:
        view.pending_source = "GET /sales?status=…"
        view.pending = _count_orders(api, admin_token, "pending")
        view.cancelling = _count_orders(api, admin_token, "cancelling")
    if business:
        view.recoveries = total_by(values or {}, "shop_recovered_sales_total", "outcome")
        if "shop_recovery_runs_total" in names:
            view.recovery_runs = int(_sum(values or {}, "shop_recovery_runs_total"))
    else:
        view.notes.append("Recoveries appear once sales exports shop_recovered_sales_total.")


def _count_orders(api: ShopApi, admin_token: str, status: str) -> int | None:
    try:
        return api.orders(admin_token, status=status).total
    except (ApiProblem, DependencyUnavailable):
        return None


def _outcome_rates(rates: dict[Sample, float]) -> dict[str, float]:
    """Settled sales per second by outcome: the status, with the failure code of a failed one."""
    outcomes: dict[str, float] = {}
    for (sample, labels), value in rates.items():
        if sample != "shop_sales_total":
            continue
        found = dict(labels)
        outcome = found.get("status", "")
        if found.get("failure_code"):
            outcome = f"{outcome} ({found['failure_code']})"
        outcomes[outcome] = outcomes.get(outcome, 0.0) + value
    return outcomes


def _purchase_rates(rates: dict[Sample, float]) -> dict[str, float]:
    """Purchases per second by HTTP status class, from the request counter."""
    outcomes: dict[str, float] = {}
    for (sample, labels), value in rates.items():
        found = dict(labels)
        if sample != "flask_http_request_total" or found.get("method") != "POST":
            continue
        if found.get("endpoint", "").split(".")[-1] not in ("purchase", "create_sale", "checkout"):
            continue
        status = found.get("status", "")
        outcome = {"201": "completed", "409": "refused", "503": "unavailable"}.get(status, status)
        outcomes[outcome] = outcomes.get(outcome, 0.0) + value
    return outcomes
