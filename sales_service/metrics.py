"""The sales service's business metrics: sales settled, saga steps, unsettled sales, recovery.

Declared here and exported by :func:`shopkit.metrics.init_metrics` (the
dashboards in ``deploy/observability/grafana`` read them).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shopkit.metrics import BusinessMetric

#: Saga step latencies: a local call takes milliseconds, a retried one seconds.
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: What a recovery pass did with each sale it examined (a ``RecoveryReport`` field each).
RECOVERY_OUTCOMES = (
    "completed",
    "failed",
    "cancelled",
    "cancellation_refused",
    "still_pending",
    "skipped",
)

SALES = BusinessMetric(
    Counter,
    "shop_sales_total",
    "Sales settled, by final status and failure code (empty when it completed).",
    ("status", "failure_code"),
    initial=({"status": "completed", "failure_code": ""},),
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
    initial=tuple({"outcome": outcome} for outcome in RECOVERY_OUTCOMES),
)
SALES_BATCH_SIZE = BusinessMetric(
    Histogram,
    "shop_sales_batch_size",
    "Calls a sales process sent together in one batch, by step (record, reserve, debit, save).",
    ("step",),
    buckets=(1, 2, 4, 8, 16, 32, 64),
)

#: What the sales service exports beside the common metrics.
METRICS = (
    SALES,
    SAGA_STEP_DURATION,
    SALES_PENDING,
    OLDEST_PENDING_AGE,
    RECOVERY_RUNS,
    RECOVERED_SALES,
    SALES_BATCH_SIZE,
)
