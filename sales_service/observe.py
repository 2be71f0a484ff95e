"""What the sales saga shows while it runs: a span per saga step, and the ``shop_*`` metrics.

* Each remote step (reserve, debit, release, refund, return) is a span
  ``saga.<step>`` opened by :func:`open_step` around the call (so the HTTP
  call and the callee's spans nest beneath it) and closed by
  :func:`close_step` when the saga logs the step's outcome. It carries the
  sale id, the step, the outcome and whether the callee replayed its answer
  (``shop.idempotent_replayed``); its duration feeds
  ``shop_saga_step_duration_seconds{step,outcome}``.
* A settled sale counts once in ``shop_sales_total{status,failure_code}``.
* Each recovery pass counts in ``shop_recovery_runs_total`` and, when it has
  sales to drive, is a trace of its own (``recovery pass``) whose sales count
  in ``shop_recovered_sales_total{outcome}``.
* ``shop_sales_pending`` and ``shop_sales_oldest_pending_age_seconds`` are read
  from the database when ``/metrics`` is scraped (:func:`refresh_unsettled`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from sqlalchemy import text

from sales_service.metrics import (
    OLDEST_PENDING_AGE,
    RECOVERED_SALES,
    RECOVERY_OUTCOMES,
    RECOVERY_RUNS,
    SAGA_STEP_DURATION,
    SALES,
    SALES_PENDING,
)
from sales_service.models import UNSETTLED_STATUSES
from shopkit.db import Database
from shopkit.service_client import DependencyUnavailable, ServiceResponse
from shopkit.telemetry import REPLAYED_ATTRIBUTE, tracer

_tracer = tracer("shop.sales")


@dataclass
class OpenStep:
    """A saga step whose call was made and whose outcome is not logged yet."""

    step: str
    span: trace.Span
    started: float
    closed: bool = False

    def answered(self, answer: ServiceResponse) -> None:
        """Note the callee's answer (its status, and whether it was a replay)."""
        self.span.set_attribute("http.response.status_code", answer.status)
        self.span.set_attribute(REPLAYED_ATTRIBUTE, answer.replayed)


@contextmanager
def open_step(sale_id: uuid.UUID, step: str, attempt: int) -> Iterator[OpenStep]:
    """Start step ``step`` of a sale's saga; the call made inside is traced beneath it.

    The span stays open after the block: :func:`close_step` ends it with the
    outcome the saga logs. A block that raises anything but
    :class:`~shopkit.service_client.DependencyUnavailable` (which the saga logs
    as ``unavailable``) ends it here as ``error``.
    """
    span = _tracer.start_span(
        f"saga.{step}",
        attributes={"shop.sale_id": str(sale_id), "shop.saga.step": step, "shop.attempt": attempt},
    )
    opened = OpenStep(step, span, time.perf_counter())
    try:
        with trace.use_span(span, end_on_exit=False, record_exception=False):
            yield opened
    except DependencyUnavailable:
        raise
    except Exception as exc:
        span.record_exception(exc)
        close_step(opened, "error")
        raise


def close_step(opened: OpenStep | None, outcome: str) -> None:
    """End a step opened by :func:`open_step` with ``outcome`` (ok, refused, unavailable...)."""
    if opened is None or opened.closed:
        return
    opened.closed = True
    elapsed = time.perf_counter() - opened.started
    opened.span.set_attribute("shop.saga.outcome", outcome)
    if outcome not in ("ok", "refused"):
        opened.span.set_status(trace.Status(trace.StatusCode.ERROR, outcome))
    opened.span.end()
    SAGA_STEP_DURATION.labels(step=opened.step, outcome=outcome).observe(elapsed)


def settled(status: str, failure_code: str | None) -> None:
    """Count a sale that just settled (its new state is committed)."""
    SALES.labels(status=status, failure_code=failure_code or "").inc()


@contextmanager
def recovery_pass(candidates: int, report: Any) -> Iterator[None]:
    """Count a recovery pass and, if it has ``candidates``, trace it as a root span.

    ``report`` (a :class:`~sales_service.recovery.RecoveryReport`) is read when
    the pass ends, for ``shop_recovered_sales_total{outcome}``.
    """
    RECOVERY_RUNS.inc()
    if not candidates:
        yield
        return
    with _tracer.start_as_current_span(
        "recovery pass", context=Context(), attributes={"shop.recovery.candidates": candidates}
    ) as span:
        yield
        for outcome in RECOVERY_OUTCOMES:
            count = getattr(report, outcome)
            span.set_attribute(f"shop.recovery.{outcome}", count)
            if count:
                RECOVERED_SALES.labels(outcome=outcome).inc(count)


#: Unsettled sales by status: how many, and how long ago the oldest entered that status.
_UNSETTLED = text(
    """
    SELECT status, count(*) AS how_many,
           extract(epoch FROM now() - min(CAST(history -> -1 ->> 'at' AS timestamptz))) AS age
    FROM sales.sales WHERE status = ANY(CAST(:statuses AS varchar[])) GROUP BY status
    """
)


def refresh_unsettled(database: Database) -> None:
    """Set ``shop_sales_pending`` and ``shop_sales_oldest_pending_age_seconds`` from the db."""
    with database.session() as session:
        found = session.execute(_UNSETTLED, {"statuses": list(UNSETTLED_STATUSES)})
        rows = {row.status: row for row in found}
    for status in UNSETTLED_STATUSES:
        row = rows.get(status)
        SALES_PENDING.labels(status=status).set(row.how_many if row else 0)
        OLDEST_PENDING_AGE.labels(status=status).set(float(row.age or 0) if row else 0.0)
