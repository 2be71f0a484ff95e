"""Prometheus metrics at ``GET /metrics``: HTTP metrics and the ``shop_*`` business metrics.

Request counts and latencies per endpoint come from prometheus-flask-exporter.
Under gunicorn with several workers, :mod:`shopkit.gunicorn_conf` sets
``PROMETHEUS_MULTIPROC_DIR`` so every worker writes its samples there and
``/metrics`` (served by any worker) adds them all up; the business metrics
below are pooled the same way.

Each service declares its own business metrics (``<service>/metrics.py``) and
hands them to :func:`init_metrics`; this module holds the machinery and the
two metrics every service exports. A metric is created the first time its
service declares it or uses it, so a service's ``/metrics`` shows only its own
(customers never shows ``shop_recovery_runs_total``). Every label set a
dashboard or an alert rule queries exists at zero from the start (a metric's
``initial`` label sets, each dependency the service calls, each endpoint that
takes an ``Idempotency-Key``), so a rate over it is 0, not "no data".
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from flask import Flask, Response, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_flask_exporter import PrometheusMetrics

from shopkit.errors import ProblemError
from shopkit.registry import BY_NAME

P = ParamSpec("P")
R = TypeVar("R")

REPLAYED_HEADER = "Idempotent-Replayed"
#: :data:`shopkit.idempotency.HEADER` (importing it from there would close a cycle:
#: idempotency -> auth -> service_client -> metrics).
IDEMPOTENCY_HEADER = "Idempotency-Key"


class BusinessMetric:
    """A ``shop_*`` metric, made on first use (so only the services that use it show it)."""

    _lock = threading.Lock()

    def __init__(
        self,
        kind: type[Counter] | type[Gauge] | type[Histogram],
        name: str,
        documentation: str,
        labelnames: tuple[str, ...] = (),
        *,
        initial: tuple[dict[str, str], ...] = (),
        **options: Any,
    ) -> None:
        self.kind = kind
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        #: Label sets shown at zero from the start (those dashboards and alerts query).
        self.initial = initial
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

    def zero(self, label_sets: Iterable[dict[str, str]]) -> None:
        """Make each of ``label_sets`` exist, at zero unless it was counted already."""
        for labels in label_sets:
            self.labels(**labels)


# --- the metrics every service exports ----------------------------------------------------------

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
COMMON_METRICS = (IDEMPOTENT_REPLAYS, DEPENDENCY_ERRORS)


def init_metrics(
    app: Flask, service: str, business: Iterable[BusinessMetric] = ()
) -> PrometheusMetrics:
    """Export ``app``'s request metrics (grouped by endpoint, not raw path) and business ones.

    ``business`` are the service's own metrics (its ``metrics.py``). Call it once
    every route is registered: the replay counter starts at zero for each of them
    that takes an ``Idempotency-Key``.
    """
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
    for metric in (*COMMON_METRICS, *business):
        registry.register(metric.metric)
        metric.zero(metric.initial)
    calls = BY_NAME[service].calls if service in BY_NAME else ()
    DEPENDENCY_ERRORS.zero({"dependency": dependency} for dependency in calls)
    IDEMPOTENT_REPLAYS.zero({"endpoint": endpoint} for endpoint in idempotent_endpoints(app))
    app.extensions["shop_metrics"] = metrics

    @app.after_request
    def _count_replay(response: Response) -> Response:
        if response.headers.get(REPLAYED_HEADER) == "true":
            rule = request.url_rule.rule if request.url_rule is not None else request.path
            IDEMPOTENT_REPLAYS.labels(endpoint=f"{request.method} {rule}").inc()
        return response

    return metrics


def idempotent_endpoints(app: Flask) -> list[str]:
    """``METHOD rule`` of each route whose OpenAPI parameters include ``Idempotency-Key``.

    The label :func:`init_metrics` counts replays under (``POST /sales``).
    """
    found = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        view_class = getattr(view, "view_class", None)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            handler = getattr(view_class, method.lower(), None) if view_class else view
            if _takes_idempotency_key(handler):
                found.append(f"{method} {rule.rule}")
    return found


def _takes_idempotency_key(handler: Any) -> bool:
    """Whether flask-smorest's docs of ``handler`` declare the ``Idempotency-Key`` header."""
    doc = getattr(handler, "_apidoc", None) or {}
    parameters = doc.get("manual_doc", {}).get("parameters", [])
    return any(p.get("in") == "header" and p.get("name") == IDEMPOTENCY_HEADER for p in parameters)


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
