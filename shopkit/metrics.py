"""Prometheus metrics at ``GET /metrics``: HTTP metrics and the ``shop_*`` business metrics.

Request counts and latencies per endpoint come from prometheus-flask-exporter.
Under gunicorn with several workers, :mod:`shopkit.gunicorn_conf` sets
``PROMETHEUS_MULTIPROC_DIR`` so every worker writes its samples there and
``/metrics`` (served by any worker) adds them all up; the business metrics
below are pooled the same way.

Each business metric is created the first time its service declares it
(:func:`init_metrics`) or uses it, so a service's ``/metrics`` shows only its
own (customers never shows ``shop_recovery_runs_total``).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from flask import Flask, Response, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_flask_exporter import PrometheusMetrics

from shopkit.errors import ProblemError

P = ParamSpec("P")
R = TypeVar("R")

REPLAYED_HEADER = "Idempotent-Replayed"
#: Saga step latencies: a local call takes milliseconds, a retried one seconds.
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class BusinessMetric:
    """A ``shop_*`` metric, made on first use (so only the services that use it show it)."""

    _lock = threading.Lock()

    def __init__(
        self,
        kind: type[Counter] | type[Gauge] | type[Histogram],
        name: str,
        documentation: str,
        labelnames: tuple[str, ...] = (),
        **options: Any,
    ) -> None:
        self.kind = kind
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.options = options
        self._metric: Any = None

    @property
    def metric(self) -> Any:
        """The prometheus_client metric (created now if it was not yet)."""
        if self._metric is None:
            with BusinessMetric._lock:
                if self._metric is None:
                    self._metric = self.kind(
                        self.name,
                        self.documentation,
                        self.labelnames,
                        registry=None,
                        **self.options,
                    )
        return self._metric

    def labels(self, **labels: str) -> Any:
        """The child for these label values."""
        return self.metric.labels(**labels)

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (a metric without labels)."""
        self.metric.inc(amount)


# --- the business metrics ----------------------------------------------------------------------

SALES = BusinessMetric(
    Counter,
    "shop_sales_total",
    "Sales settled, by final status and failure code (empty when it completed).",
    ("status", "failure_code"),
)
SAGA_STEP_DURATION = BusinessMetric(
    Histogram,
    "shop_saga_step_duration_seconds",
    "Time of one saga step (reserve, debit, release, refund, return), by outcome.",
    ("step", "outcome"),
    buckets=STEP_BUCKETS,
)
SALES_PENDING = BusinessMetric(
    Gauge,
    "shop_sales_pending",
    "Sales not settled right now (pending, cancelling), read from the database at scrape time.",
    ("status",),
    multiprocess_mode="mostrecent",
)
OLDEST_PENDING_AGE = BusinessMetric(
    Gauge,
    "shop_sales_oldest_pending_age_seconds",
    "Age of the oldest unsettled sale (0 when none), read from the database at scrape time.",
    ("status",),
    multiprocess_mode="mostrecent",
)
RECOVERY_RUNS = BusinessMetric(
    Counter, "shop_recovery_runs_total", "Recovery passes over stale unsettled sales."
)
RECOVERED_SALES = BusinessMetric(
    Counter,
    "shop_recovered_sales_total",
    "Sales a recovery pass examined, by outcome (completed, failed, cancelled, still_pending...).",
    ("outcome",),
)
IDEMPOTENT_REPLAYS = BusinessMetric(
    Counter,
    "shop_idempotent_replays_total",
    "Answers replayed from the idempotency store instead of acting again, by endpoint.",
    ("endpoint",),
)
DEPENDENCY_ERRORS = BusinessMetric(
    Counter,
    "shop_dependency_errors_total",
    "Failed attempts to call another service (no answer, timeout, 502/503/504), retried or not.",
    ("dependency",),
)
SALES_BATCH_SIZE = BusinessMetric(
    Histogram,
    "shop_sales_batch_size",
    "Calls a sales process sent together in one batch, by step (record, reserve, debit, save).",
    ("step",),
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
WALLET_DEBITS = BusinessMetric(
    Counter, "shop_wallet_debits_total", "Wallet debits of sales made (replays not counted)."
)
STOCK_RESERVATIONS = BusinessMetric(
    Counter,
    "shop_stock_reservations_total",
    "Stock reservation requests by outcome: ok or the refusal's code (replays not counted).",
    ("outcome",),
)
LOGINS = BusinessMetric(
    Counter,
    "shop_logins_total",
    "Password logins by outcome: ok or the refusal's code.",
    ("outcome",),
)

#: The business metrics each service exports, beside the common ones.
COMMON_METRICS = (IDEMPOTENT_REPLAYS, DEPENDENCY_ERRORS)
SERVICE_METRICS: dict[str, tuple[BusinessMetric, ...]] = {
    "customers": (LOGINS, WALLET_DEBITS),
    "inventory": (STOCK_RESERVATIONS,),
    "sales": (
        SALES,
        SAGA_STEP_DURATION,
        SALES_PENDING,
        OLDEST_PENDING_AGE,
        RECOVERY_RUNS,
        RECOVERED_SALES,
        SALES_BATCH_SIZE,
    ),
}


def init_metrics(app: Flask, service: str) -> PrometheusMetrics:
    """Export ``app``'s request metrics (grouped by endpoint, not raw path) and business ones."""
    # A registry per app keeps several apps in one process (tests) apart; in
    # multiprocess mode the exporter collects from PROMETHEUS_MULTIPROC_DIR instead.
    registry = CollectorRegistry(auto_describe=True)
    metrics = PrometheusMetrics(
        app,
        registry=registry,
        group_by="endpoint",
        excluded_paths=["^/metrics$", "^/healthz$", "^/docs"],
        default_labels={"service": service},
    )
    metrics.info("shop_service_info", "Shop service", service=service)
    # Multiprocess mode reads every metric a worker made from its files; a single
    # process serves the app's registry, so the service's metrics are registered there.
    for business in COMMON_METRICS + SERVICE_METRICS.get(service, ()):
        registry.register(business.metric)
    app.extensions["shop_metrics"] = metrics

    @app.after_request
    def _count_replay(response: Response) -> Response:
        if response.headers.get(REPLAYED_HEADER) == "true":
            rule = request.url_rule.rule if request.url_rule is not None else request.path
            IDEMPOTENT_REPLAYS.labels(endpoint=f"{request.method} {rule}").inc()
        return response

    return metrics


def before_scrape(app: Flask, refresh: Callable[[], None]) -> None:
    """Call ``refresh`` right before ``app`` answers ``GET /metrics`` (gauges read at scrape)."""

    @app.before_request
    def _refresh() -> None:
        if request.path == "/metrics":
            refresh()


def count_outcome(metric: BusinessMetric, outcome: str | None) -> None:
    """Count one answer in ``metric``: ``ok`` or the refusal's code (as :func:`counts_outcomes`)."""
    if metric.labelnames:
        metric.labels(outcome=outcome or "error").inc()
    elif outcome == "ok":
        metric.inc()


def counts_outcomes(metric: BusinessMetric) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Count each answer of a view in ``metric``, replays excepted.

    A metric with an ``outcome`` label counts ``ok`` for a 2xx answer and the
    problem's ``code`` otherwise; one without labels counts successes only.
    Put it right above the view function (below the route's other decorators).
    """

    def count(outcome: str) -> None:
        count_outcome(metric, outcome)

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def counted(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                result = view(*args, **kwargs)
            except ProblemError as problem:
                count(problem.code)
                raise
            if isinstance(result, Response):
                if result.headers.get(REPLAYED_HEADER) == "true":
                    return result
                if result.status_code >= 400:
                    body = result.get_json(silent=True) or {}
                    count(str(body.get("code") or result.status_code))
                    return result
            count("ok")
            return result

        return counted

    return decorate
