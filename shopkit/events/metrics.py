"""The event metrics (``shop_events_*``, ``shop_consumer_lag``, ``shop_outbox_backlog``, ...).

Like the other business metrics (:mod:`shopkit.metrics`), each is created on
first use, so only the processes that publish or consume show them, and the
gauges pool across gunicorn workers by their most recent value.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from shopkit.metrics import BusinessMetric

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
CONSUMER_LAG = BusinessMetric(
    Gauge,
    "shop_consumer_lag",
    "How far a consumer group is behind its stream: unit=entries (not yet delivered) or "
    "unit=seconds (age of the oldest entry not yet delivered or acknowledged)",
    ("group", "stream", "unit"),
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
