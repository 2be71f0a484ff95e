"""Prometheus metrics at ``GET /metrics``.

Request counts and latencies per endpoint come from prometheus-flask-exporter.
Under gunicorn with several workers, :mod:`shopkit.gunicorn_conf` sets
``PROMETHEUS_MULTIPROC_DIR`` so every worker writes its samples there and
``/metrics`` (served by any worker) adds them all up.
"""

from __future__ import annotations

from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_flask_exporter import PrometheusMetrics


def init_metrics(app: Flask, service: str) -> PrometheusMetrics:
    """Export request metrics of ``app`` (grouped by endpoint, not raw path)."""
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
    app.extensions["shop_metrics"] = metrics
    return metrics
