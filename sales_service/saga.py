"""The purchase saga (ARCHITECTURE §7): record pending → reserve stock → debit wallet → completed.

A sale is driven by exactly one worker at a time: the driver holds the sale's
row lock (``SELECT ... FOR UPDATE``) in one transaction for the whole drive,
and recovery skips locked rows. Every remote step carries a deterministic
idempotency key, so driving a sale again (after a timeout, a crash or a
restart) replays what already happened instead of doing it twice:

* reserve refused (``insufficient_stock``, unknown product) → ``failed``, nothing to undo;
* debit refused (``insufficient_funds``, inactive customer) → release the
  reservation, then ``failed``;
* debit accepted → ``completed``;
* a dependency unreachable, or an answer we cannot interpret → the sale stays
  ``pending`` and :mod:`sales_service.recovery` finishes it later.

The debit is the pivot: once it succeeded the sale can only complete.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from sales_service.clients import SaleClients
from sales_service.models import COMPLETED, FAILED, PENDING, SagaStep, Sale
from shopkit.auth import Principal
from shopkit.errors import Conflict, ProblemError
from shopkit.service_client import DependencyUnavailable, ServiceResponse

log = logging.getLogger(__name__)

#: Refusals of the reservation that end the sale (nothing was reserved).
RESERVE_REFUSALS = {"insufficient_stock": "insufficient_stock", "not_found": "product_not_found"}
#: Refusals of the debit that end the sale (the reservation is released first).
DEBIT_REFUSALS = {
    "insufficient_funds": "insufficient_funds",
    "customer_inactive": "customer_inactive",
    "not_found": "customer_not_found",
}

#: Chaos-testing knob: a worker exits abruptly right after this step's answer
#: arrived (before anything is committed), to prove recovery settles the sale.
CRASH_AFTER_ENV = "SALES_CRASH_AFTER"


class SagaIncomplete(ProblemError):
    """503: the outcome is not known yet; the sale stays pending until recovery settles it."""

    def __init__(self, sale_id: uuid.UUID, detail: str, dependency: str | None = None) -> None:
        super().__init__(
            503,
            "dependency_unavailable",
            detail,
            headers={"Retry-After": "5"},
            sale_id=str(sale_id),
            dependency=dependency,
        )


@dataclass(frozen=True)
class NewSale:
    """What a customer asked to buy, with the optional client idempotency key."""

    product_id: int
    quantity: int
    idempotency_key: str | None = None
    fingerprint: str | None = None


_sales = Sale.__table__
_steps = SagaStep.__table__

#: What :func:`record_sale` writes.
_RECORDED_COLUMNS = (
    "id",
    "customer_id",
    "username",
    "product_id",
    "quantity",
    "status",
    "idempotency_key",
    "request_fingerprint",
)
#: The sale's columns a drive may change; written back in one ``UPDATE`` at its end.
_DRIVEN_COLUMNS = (
    "status",
    "failure_code",
    "product_name",
    "unit_price",
    "total",
    "attempts",
    "updated_at",
    "completed_at",
)


# Statements built once, with parameters bound by name.
_RECORD_SALE = (
    pg_insert(_sales)
    .values({name: bindparam(name) for name in _RECORDED_COLUMNS})
    .on_conflict_do_nothing(
        index_elements=["customer_id", "idempotency_key"],
        index_where=_sales.c.idempotency_key.is_not(None),
    )
    .returning(*_sales.c)
)
_SALE_FOR_KEY = select(_sales).where(
    _sales.c.customer_id == bindparam("customer_id"),
    _sales.c.idempotency_key == bindparam("idempotency_key"),
)
_LOCK_PENDING_SALE = (
    select(_sales)
    .where(_sales.c.id == bindparam("sale_id"), _sales.c.status == PENDING)
    .with_for_update(skip_locked=True)
)
_SAVE_SALE = (
    update(_sales)
    .where(_sales.c.id == bindparam("sale_id"))
    .values({name: bindparam(f"new_{name}") for name in _DRIVEN_COLUMNS})
)
_LOG_STEPS = insert(_steps)


def _now() -> datetime:
    return datetime.now(UTC)


def _maybe_crash(step: str) -> None:
    if os.environ.get(CRASH_AFTER_ENV) == step:
        log.critical("chaos: exiting after %s as %s asks", step, CRASH_AFTER_ENV)
        os._exit(70)


@dataclass
class _Drive:
    """One drive of a sale: the sale as it evolves, and the steps to log with it."""

    sale: Sale
    steps: list[dict[str, Any]] = field(default_factory=list)

    def log(self, step: str, outcome: str, **detail: Any) -> None:
        """Note a step; it is written with the sale's new state when the drive ends."""
        self.steps.append(
            {"sale_id": self.sale.id, "step": step, "outcome": outcome, "detail": detail}
        )

    def finish(self, status: str, failure_code: str | None = None) -> None:
        """Settle the sale as ``completed`` or ``failed``."""
        sale = self.sale
        sale.status = status
        sale.failure_code = failure_code
        sale.updated_at = _now()
        if status == COMPLETED:
            sale.completed_at = sale.updated_at
        self.log("complete" if status == COMPLETED else "fail", "ok", code=failure_code)

    def save(self, session: Session) -> None:
        """Write the sale's new state and its steps, and commit (which releases the lock)."""
        connection = session.connection()
        sale = self.sale
        state = {f"new_{name}": getattr(sale, name) for name in _DRIVEN_COLUMNS}
        connection.execute(_SAVE_SALE, {"sale_id": sale.id, **state})
        if self.steps:
            connection.execute(_LOG_STEPS, self.steps)
        session.commit()


def _sale_from(row: Any) -> Sale:
    """A detached :class:`Sale` holding ``row``: changed freely, written back explicitly."""
    return Sale(**row._mapping)


def record_sale(session: Session, principal: Principal, request: NewSale) -> tuple[Sale, bool]:
    """Step 1: commit the sale as ``pending``. Returns ``(sale, created)``.

    With a client idempotency key that this customer already used, the
    existing sale is returned (``created`` false); a different request under
    the same key is 422 ``idempotency_key_reused``. Two requests racing with
    one key meet on the unique index: the second waits for the first to
    commit and then finds its sale.
    """
    assert principal.customer_id is not None
    recorded = {
        "id": uuid.uuid4(),
        "customer_id": principal.customer_id,
        "username": principal.subject,
        "product_id": request.product_id,
        "quantity": request.quantity,
        "status": PENDING,
        "idempotency_key": request.idempotency_key,
        "request_fingerprint": request.fingerprint,
    }
    row = session.connection().execute(_RECORD_SALE, recorded).first()
    if row is not None:
        session.commit()
        return _sale_from(row), True
    session.rollback()
    assert request.idempotency_key is not None  # only a key can conflict
    existing = session.connection().execute(_SALE_FOR_KEY, recorded).one()
    session.rollback()
    return _check_same_request(_sale_from(existing), request), False


def _check_same_request(sale: Sale, request: NewSale) -> Sale:
    if sale.request_fingerprint != request.fingerprint:
        raise ProblemError(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was already used for a different purchase.",
            sale_id=str(sale.id),
        )
    return sale


def lock_sale(session: Session, sale_id: uuid.UUID) -> Sale | None:
    """Lock a pending sale to drive it; ``None`` if it is settled or someone else drives it.

    The sale comes back detached: :func:`drive` changes it in memory and
    writes it back with one ``UPDATE`` (cheaper than the ORM's unit of work).
    """
    row = session.connection().execute(_LOCK_PENDING_SALE, {"sale_id": sale_id}).first()
    return None if row is None else _sale_from(row)


def drive(session: Session, clients: SaleClients, sale: Sale) -> Sale:
    """Run (or resume) the saga of a sale locked by :func:`lock_sale`, and commit its outcome.

    Raises :class:`SagaIncomplete` (after committing the attempt) when the
    outcome cannot be decided now; the sale then stays ``pending``.
    """
    run = _Drive(sale)
    sale.attempts += 1
    sale.updated_at = _now()
    try:
        _run_steps(run, clients)
    except SagaIncomplete:
        run.save(session)
        raise
    run.save(session)
    return sale


def _unknown(run: _Drive, step: str, answer: ServiceResponse) -> SagaIncomplete:
    run.log(step, "unexpected", status=answer.status, code=answer.code)
    log.error("sale %s: unexpected %s answer %s %s", run.sale.id, step, answer.status, answer.code)
    return SagaIncomplete(run.sale.id, f"The {step} step got an unexpected answer; will retry.")


def _call(run: _Drive, step: str, call: Any) -> ServiceResponse:
    try:
        answer: ServiceResponse = call()
    except DependencyUnavailable as exc:
        run.log(step, "unavailable")
        dependency = exc.extra.get("dependency")
        raise SagaIncomplete(
            run.sale.id,
            f"The {dependency} service is unavailable; the purchase is pending and will be "
            "settled automatically.",
            dependency=dependency,
        ) from exc
    _maybe_crash(step)
    return answer


def _run_steps(run: _Drive, clients: SaleClients) -> None:
    sale = run.sale
    # Step 2: reserve stock (compensatable).
    reserved = _call(
        run, "reserve", lambda: clients.inventory.reserve(sale.id, sale.product_id, sale.quantity)
    )
    if reserved.status in (409, 404) and reserved.code in RESERVE_REFUSALS:
        run.log("reserve", "refused", code=reserved.code)
        run.finish(FAILED, RESERVE_REFUSALS[reserved.code])
        return
    if reserved.status != 201:
        raise _unknown(run, "reserve", reserved)
    sale.product_name = str(reserved.body["name"])
    sale.unit_price = Decimal(str(reserved.body["unit_price"]))
    sale.total = (sale.unit_price * sale.quantity).quantize(Decimal("0.01"))
    run.log("reserve", "ok", unit_price=str(sale.unit_price))

    # Step 3: debit the wallet (the pivot).
    debited = _call(
        run,
        "debit",
        lambda: clients.customers.debit(sale.id, sale.customer_id, sale.total),  # type: ignore[arg-type]
    )
    if debited.status == 201 or (debited.status == 409 and debited.code == "already_recorded"):
        run.log("debit", "ok", amount=str(sale.total))
        run.finish(COMPLETED)
        return
    if debited.status in (404, 409) and debited.code in DEBIT_REFUSALS:
        run.log("debit", "refused", code=debited.code)
        _compensate(run, clients, DEBIT_REFUSALS[debited.code])
        return
    raise _unknown(run, "debit", debited)


def _compensate(run: _Drive, clients: SaleClients, failure_code: str) -> None:
    """Release the reservation, then fail the sale (it stays pending if inventory is away)."""
    released = _call(run, "release", lambda: clients.inventory.release(run.sale.id))
    if released.status not in (200, 201):
        raise _unknown(run, "release", released)
    run.log("release", "ok")
    run.finish(FAILED, failure_code)


def purchase(
    session: Session, clients: SaleClients, principal: Principal, request: NewSale
) -> tuple[Sale, bool]:
    """Record and drive a purchase. Returns ``(sale, replayed)``.

    A replayed client key returns the existing sale as it stands, driving it
    first if it is still pending and nobody else is driving it.
    """
    sale, created = record_sale(session, principal, request)
    if not created and sale.status != PENDING:
        return sale, True
    locked = lock_sale(session, sale.id)
    if locked is None:
        session.rollback()
        current = session.get(Sale, sale.id, populate_existing=True)
        assert current is not None
        if current.status == PENDING:
            raise Conflict(
                "sale_in_progress",
                "This purchase is being processed right now; retry shortly.",
                sale_id=str(sale.id),
            )
        return current, not created
    return drive(session, clients, locked), not created
