"""Recovery: drive every stale ``pending`` order to ``completed`` or ``failed``, and every
stale ``cancelling`` one to ``cancelled``.

An order is stale when it has been unsettled for longer than ``older_than_s``
(its driver crashed, or a dependency was down). Recovery repeats the saga's
steps with the same idempotency keys (see :mod:`sales_service.saga` and
:mod:`sales_service.cancellation`), so what already happened is replayed,
not redone.

An order just recorded (or just moved to ``cancelling``) is leased to the
request that is about to drive it (``lease_until``, see
:data:`sales_service.saga_store.LEASE_S`): recovery skips it until it has been
driven once or the lease ran out, even with ``--older-than 0``.

It is safe to run everywhere at once (every gunicorn worker of every sales
instance runs it periodically, plus ``flask --app sales_service recover``):
each sale is taken with ``FOR UPDATE SKIP LOCKED`` and only while it is not
leased, so a sale being driven by someone else (under its row lock, or, in a
batch, under its lease alone) is skipped, never driven twice.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select

from sales_service import observe
from sales_service.cancellation import drive_cancellation
from sales_service.clients import SaleClients
from sales_service.models import CANCELLED, COMPLETED, PENDING, UNSETTLED_STATUSES, Sale
from sales_service.saga import SagaIncomplete, drive
from sales_service.saga_store import lock_sale
from shopkit.db import Database
from shopkit.telemetry import untraced

log = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    """What one recovery pass did."""

    examined: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    #: Cancellations whose refund the wallet refused for good: completed again.
    cancellation_refused: int = 0
    still_pending: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


def recover_pending(
    database: Database, clients: SaleClients, *, older_than_s: float = 30.0, limit: int = 500
) -> RecoveryReport:
    """Drive up to ``limit`` orders unsettled for more than ``older_than_s`` seconds."""
    report = RecoveryReport()
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
    with untraced(), database.session() as session:  # an idle poll is no trace
        candidates = list(
            session.execute(
                select(Sale.id, Sale.status)
                .where(
                    Sale.status.in_(UNSETTLED_STATUSES),
                    Sale.updated_at <= cutoff,
                    # Still leased to the request that recorded it: it is about to be driven.
                    or_(Sale.lease_until.is_(None), Sale.lease_until <= func.now()),
                )
                .order_by(Sale.created_at)
                .limit(limit)
            )
        )
    with observe.recovery_pass(len(candidates), report):
        for sale_id, status in candidates:
            report.examined += 1
            with database.session() as session:
                sale = lock_sale(session, sale_id, status)
                if sale is None:  # settled meanwhile, or someone else is driving it
                    report.skipped += 1
                    continue
                try:
                    if status == PENDING:
                        drive(session, clients, sale)
                    else:
                        drive_cancellation(session, clients, sale)
                except SagaIncomplete as exc:
                    report.still_pending += 1
                    report.errors.append(f"{sale_id}: {exc.detail}")
                    continue
                except Exception as exc:  # one bad sale must not stop the pass
                    log.exception("recovery of sale %s failed", sale_id)
                    session.rollback()
                    report.still_pending += 1
                    report.errors.append(f"{sale_id}: {type(exc).__name__}")
                    continue
                # A drive that returns has settled the sale (otherwise it raised).
                if status != PENDING and sale.status == COMPLETED:
                    report.cancellation_refused += 1
                elif sale.status == COMPLETED:
                    report.completed += 1
                elif sale.status == CANCELLED:
                    report.cancelled += 1
                else:
                    report.failed += 1
    if report.examined:
        log.info(
            "recovery pass: %d examined, %d completed, %d failed, %d cancelled, "
            "%d cancellations refused, %d still unsettled, %d skipped",
            report.examined,
            report.completed,
            report.failed,
            report.cancelled,
            report.cancellation_refused,
            report.still_pending,
            report.skipped,
        )
    return report


class PeriodicRecovery:
    """A daemon thread running :func:`recover_pending` every ``interval_s`` (with jitter)."""

    def __init__(
        self, database: Database, clients: SaleClients, *, interval_s: float, older_than_s: float
    ) -> None:
        self.database = database
        self.clients = clients
        self.interval_s = interval_s
        self.older_than_s = older_than_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sales-recovery", daemon=True)

    @property
    def started(self) -> bool:
        """Whether the thread was started."""
        return self._thread.is_alive()

    def start(self) -> PeriodicRecovery:
        """Start the thread (the first pass runs shortly after start)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the thread to stop after its current pass."""
        self._stop.set()

    def _run(self) -> None:
        delay = random.uniform(1.0, 3.0)  # noqa: S311 (spread workers' first passes)
        while not self._stop.wait(delay):
            try:
                recover_pending(self.database, self.clients, older_than_s=self.older_than_s)
            except Exception:
                log.exception("recovery pass failed")
            delay = self.interval_s * random.uniform(0.8, 1.2)  # noqa: S311
