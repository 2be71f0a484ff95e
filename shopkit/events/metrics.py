"""The event metrics (``shop_events_*``, ``shop_consumer_lag_*``, ``shop_outbox_backlog``, ...).

Like the other business metrics (:mod:`shopkit.metrics`), each is created on
first use, so only the processes that publish or consume show them, and the
gauges pool across gunicorn workers by their most recent value. Every label
set the Events row of the Grafana dashboard and the alert rules query exists
at zero from the start: :func:`init_event_metrics` makes them for an emitting
or consuming service's app, :func:`zero_group` for a consumer group, and
:func:`serve_worker_metrics` serves a worker process's metrics (it has no HTTP
app) on a port of its own.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence

from flask import Flask
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from shopkit.events.catalog import stream_for
from shopkit.metrics import BusinessMetric

log = logging.getLogger(__name__)

#: What a consumer group counts each entry as (``shop_events_consumed_total{outcome}``).
CONSUMED_OUTCOMES = ("applied", "duplicate", "failed", "dead_lettered")

EVENTS_PUBLISHED = BusinessMetric(
    Counter,
    "shop_events_published_total",
    "Events the relay published to the broker (a republished event counts again)",
    ("stream",),
)
EVENTS_CONSUMED = BusinessMetric(
    Counter,
    "shop_events_consumed_total",
    "Stream entries a consumer group handled, by outcome: applied, duplicate "
    "(its effect was already committed), failed (will be retried) or dead_lettered",
    ("group", "outcome"),
)
# The lag in two gauges, one per unit, as Prometheus names them (a sum over one metric
# must not add entries to seconds).
CONSUMER_LAG_ENTRIES = BusinessMetric(
    Gauge,
    "shop_consumer_lag_entries",
    "How far a consumer group is behind its stream: entries not yet delivered to it",
    ("group", "stream"),
    multiprocess_mode="mostrecent",
)
CONSUMER_LAG_SECONDS = BusinessMetric(
    Gauge,
    "shop_consumer_lag_seconds",
    "How far a consumer group is behind its stream: age of the oldest entry it has not "
    "finished with (not yet delivered, or delivered and not acknowledged)",
    ("group", "stream"),
    multiprocess_mode="mostrecent",
)
OUTBOX_BACKLOG = BusinessMetric(
    Gauge,
    "shop_outbox_backlog",
    "Committed outbox rows not yet published",
    ("service",),
    multiprocess_mode="mostrecent",
)
DEAD_LETTERS = BusinessMetric(
    Gauge,
    "shop_dead_letters",
    "Events a consumer group gave up on, waiting in its dead-letter stream",
    ("group",),
    multiprocess_mode="mostrecent",
)
#: What an emitting service reports (its relay), and what a consumer group's process does.
EMITTER_METRICS = (EVENTS_PUBLISHED, OUTBOX_BACKLOG)
CONSUMER_METRICS = (EVENTS_CONSUMED, CONSUMER_LAG_ENTRIES, CONSUMER_LAG_SECONDS, DEAD_LETTERS)


def _set_zero(gauge: BusinessMetric, label_sets: Iterable[dict[str, str]]) -> None:
    """Set each of ``label_sets`` of ``gauge`` to 0, before the process measures it.

    Set, not only made: gunicorn's multiprocess collector shows a ``mostrecent``
    gauge's sample only once it was set (a made one has no timestamp).
    """
    for labels in label_sets:
        gauge.labels(**labels).set(0)


def zero_emitter(service: str, aggregates: Iterable[str]) -> None:
    """Make ``service``'s published counter (one per stream of ``aggregates``) and its
    backlog exist at zero."""
    EVENTS_PUBLISHED.zero({"stream": stream_for(aggregate)} for aggregate in aggregates)
    _set_zero(OUTBOX_BACKLOG, [{"service": service}])


def zero_group(group: str, streams: Sequence[str]) -> None:
    """Make consumer group ``group``'s outcomes, lag on each of ``streams`` and dead
    letters exist at zero (call it before the group's consumer starts in this process)."""
    EVENTS_CONSUMED.zero({"group": group, "outcome": outcome} for outcome in CONSUMED_OUTCOMES)
    for gauge in (CONSUMER_LAG_ENTRIES, CONSUMER_LAG_SECONDS):
        _set_zero(gauge, ({"group": group, "stream": stream} for stream in streams))
    _set_zero(DEAD_LETTERS, [{"group": group}])


def _register(registry: CollectorRegistry, metrics: Iterable[BusinessMetric]) -> None:
    """Register ``metrics`` on ``registry`` once (several calls for one app are fine)."""
    for metric in metrics:
        with contextlib.suppress(ValueError):  # already there (another group of the app)
            registry.register(metric.metric)


def init_event_metrics(
    app: Flask,
    *,
    service: str,
    emits: Iterable[str] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Export the event metrics of ``app``'s process on its ``/metrics``, at zero.

    ``emits`` are the aggregates ``service`` writes to its outbox (``order``; ``None``:
    it has no outbox); ``groups`` the consumer groups its workers run, each with its
    streams. :func:`~shopkit.events.service_relay.relay_with_first_request` and
    :func:`~shopkit.events.service_consumer.consumer_with_first_request` call it, whether
    or not the broker is configured: the series exist with events off too.
    """
    registry = app.extensions["shop_metrics"].registry
    if emits is not None:
        _register(registry, EMITTER_METRICS)
        zero_emitter(service, emits)
    for group, streams in (groups or {}).items():
        _register(registry, CONSUMER_METRICS)
        zero_group(group, streams)


def serve_worker_metrics(
    port: int, groups: Mapping[str, Sequence[str]]
) -> CollectorRegistry | None:
    """Serve a worker process's metrics at ``http://0.0.0.0:<port>/metrics`` (a thread).

    The consumer groups' metrics (at zero for ``groups``) and the process's own
    (CPU, memory). ``port`` 0 serves nothing. A port already taken (a second worker
    on the same host) is logged and the worker runs on without metrics.
    """
    if not port:
        return None
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    _register(registry, CONSUMER_METRICS)
    for group, streams in groups.items():
        zero_group(group, streams)
    try:
        start_http_server(port, registry=registry)
    except OSError as error:
        log.warning("worker metrics not served: port %d: %s", port, error)
        return None
    log.info("worker metrics at http://0.0.0.0:%d/metrics", port)
    return registry
