"""What operators see of the events: the outbox backlog counted at scrape time, a worker's
metrics served on a port of its own, every queried series at zero from the start."""

from __future__ import annotations

import uuid

import requests
from prometheus_client.parser import text_string_to_metric_families

from shopkit.db import Database
from shopkit.events.catalog import stream_for
from shopkit.events.metrics import (
    CONSUMED_OUTCOMES,
    OUTBOX_BACKLOG,
    serve_worker_metrics,
)
from shopkit.events.service_relay import refresh_backlog
from tests.events import tables
from tests.support.database import free_port
from tests.support.events import sample

STREAMS = (stream_for("order"), stream_for("wallet"))


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``(sample name, sorted labels) → value`` of ``http://127.0.0.1:<port>/metrics``."""
    body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (found.name, tuple(sorted(found.labels.items()))): found.value
        for family in text_string_to_metric_families(body)
        for found in family.samples
    }


def test_the_backlog_is_what_the_relay_has_not_published_yet(
    database_url, emit_orders, relay
) -> None:
    database = Database(database_url, application_name="backlog-test", pool_size=1)
    try:
        emit_orders(7, [str(uuid.uuid4())])
        assert refresh_backlog(database, tables.outbox, "backlog-test") == 7
        assert sample(OUTBOX_BACKLOG, "shop_outbox_backlog", service="backlog-test") == 7
        relay.publish_once()
        assert refresh_backlog(database, tables.outbox, "backlog-test") == 0
        assert sample(OUTBOX_BACKLOG, "shop_outbox_backlog", service="backlog-test") == 0
    finally:
        database.dispose()


def test_the_backlog_keeps_its_value_when_the_database_is_away() -> None:
    database = Database(
        "postgresql+psycopg2://nobody:wrong@127.0.0.1:1/none?connect_timeout=2",
        application_name="backlog-test",
        pool_size=1,
    )
    OUTBOX_BACKLOG.labels(service="away-test").set(5)
    try:
        assert refresh_backlog(database, tables.outbox, "away-test") is None
    finally:
        database.dispose()
    assert sample(OUTBOX_BACKLOG, "shop_outbox_backlog", service="away-test") == 5


def test_a_worker_serves_its_groups_metrics_at_zero_on_its_own_port() -> None:
    port = free_port()
    assert serve_worker_metrics(port, {"worker-test": STREAMS}) is not None
    samples = scrape(port)
    for outcome in CONSUMED_OUTCOMES:
        key = ("shop_events_consumed_total", (("group", "worker-test"), ("outcome", outcome)))
        assert samples[key] == 0.0, key
    for stream in STREAMS:
        labels = (("group", "worker-test"), ("stream", stream))
        assert samples[("shop_consumer_lag_entries", labels)] == 0.0
        assert samples[("shop_consumer_lag_seconds", labels)] == 0.0
    assert samples[("shop_dead_letters", (("group", "worker-test"),))] == 0.0
    assert samples[("process_cpu_seconds_total", ())] > 0
    # A second worker on the same host runs on without metrics rather than failing.
    assert serve_worker_metrics(port, {"worker-test": STREAMS}) is None
    assert serve_worker_metrics(0, {"worker-test": STREAMS}) is None
