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
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
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


def _now() -> datetime:
    return datetime.now(UTC)


def _maybe_crash(step: str) -> None:
    if os.environ.get(CRASH_AFTER_ENV) == step:
        log.critical("chaos: exiting after %s as %s asks", step, CRASH_AFTER_ENV)
        os._exit(70)


def _log_step(session: Session, sale: Sale, step: str, outcome: str, **detail: Any) -> None:
    session.add(SagaStep(sale_id=sale.id, step=step, outcome=outcome, detail=detail))


def _finish(session: Session, sale: Sale, status: str, failure_code: str | None = None) -> None:
    sale.status = status
    sale.failure_code = failure_code
    sale.updated_at = _now()
    if status == COMPLETED:
        sale.completed_at = sale.updated_at
    _log_step(session, sale, "complete" if status == COMPLETED else "fail", "ok", code=failure_code)


def record_sale(session: Session, principal: Principal, request: NewSale) -> tuple[Sale, bool]:
    """Step 1: commit the sale as ``pending``. Returns ``(sale, created)``.

    With a client idempotency key that this customer already used, the
    existing sale is returned (``created`` false); a different request under
    the same key is 422 ``idempotency_key_reused``.
    """
    assert principal.customer_id is not None
    if request.idempotency_key is not None:
        existing = _sale_for_key(session, principal.customer_id, request.idempotency_key)
        if existing is not None:
            return _check_same_request(existing, request), False
    sale = Sale(
        id=uuid.uuid4(),
        customer_id=principal.customer_id,
        username=principal.subject,
        product_id=request.product_id,
        quantity=request.quantity,
        status=PENDING,
        idempotency_key=request.idempotency_key,
        request_fingerprint=request.fingerprint,
    )
    session.add(sale)
    try:
        session.commit()
    except IntegrityError:  # the same key raced in from a concurrent retry
        session.rollback()
        assert request.idempotency_key is not None
        existing = _sale_for_key(session, principal.customer_id, request.idempotency_key)
        if existing is None:
            raise
        return _check_same_request(existing, request), False
    return sale, True


def _sale_for_key(session: Session, customer_id: int, key: str) -> Sale | None:
    return session.execute(
        select(Sale).where(Sale.customer_id == customer_id, Sale.idempotency_key == key)
    ).scalar_one_or_none()


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
    """Lock a pending sale to drive it; ``None`` if it is settled or someone else drives it."""
    statement = select(Sale).where(Sale.id == sale_id, Sale.status == PENDING)
    statement = statement.with_for_update(skip_locked=True)
    return session.execute(statement).scalar_one_or_none()


def drive(session: Session, clients: SaleClients, sale: Sale) -> Sale:
    """Run (or resume) the saga of a locked pending sale and commit its outcome.

    Raises :class:`SagaIncomplete` (after committing the attempt) when the
    outcome cannot be decided now; the sale then stays ``pending``.
    """
    sale.attempts += 1
    sale.updated_at = _now()
    try:
        _run_steps(session, clients, sale)
    except SagaIncomplete:
        session.commit()
        raise
    session.commit()
    return sale


def _unknown(session: Session, sale: Sale, step: str, answer: ServiceResponse) -> SagaIncomplete:
    _log_step(session, sale, step, "unexpected", status=answer.status, code=answer.code)
    log.error("sale %s: unexpected %s answer %s %s", sale.id, step, answer.status, answer.code)
    return SagaIncomplete(sale.id, f"The {step} step got an unexpected answer; will retry.")


def _call(session: Session, sale: Sale, step: str, call: Any) -> ServiceResponse:
    try:
        answer: ServiceResponse = call()
    except DependencyUnavailable as exc:
        _log_step(session, sale, step, "unavailable")
        dependency = exc.extra.get("dependency")
        raise SagaIncomplete(
            sale.id,
            f"The {dependency} service is unavailable; the purchase is pending and will be "
            "settled automatically.",
            dependency=dependency,
        ) from exc
    _maybe_crash(step)
    return answer


def _run_steps(session: Session, clients: SaleClients, sale: Sale) -> None:
    # Step 2: reserve stock (compensatable).
    reserved = _call(
        session,
        sale,
        "reserve",
        lambda: clients.inventory.reserve(sale.id, sale.product_id, sale.quantity),
    )
    if reserved.status in (409, 404) and reserved.code in RESERVE_REFUSALS:
        _log_step(session, sale, "reserve", "refused", code=reserved.code)
        _finish(session, sale, FAILED, RESERVE_REFUSALS[reserved.code])
        return
    if reserved.status != 201:
        raise _unknown(session, sale, "reserve", reserved)
    sale.product_name = str(reserved.body["name"])
    sale.unit_price = Decimal(str(reserved.body["unit_price"]))
    sale.total = (sale.unit_price * sale.quantity).quantize(Decimal("0.01"))
    _log_step(session, sale, "reserve", "ok", unit_price=str(sale.unit_price))

    # Step 3: debit the wallet (the pivot).
    debited = _call(
        session,
        sale,
        "debit",
        lambda: clients.customers.debit(sale.id, sale.customer_id, sale.total),  # type: ignore[arg-type]
    )
    if debited.status == 201 or (debited.status == 409 and debited.code == "already_recorded"):
        _log_step(session, sale, "debit", "ok", amount=str(sale.total))
        _finish(session, sale, COMPLETED)
        return
    if debited.status in (404, 409) and debited.code in DEBIT_REFUSALS:
        _log_step(session, sale, "debit", "refused", code=debited.code)
        _compensate(session, clients, sale, DEBIT_REFUSALS[debited.code])
        return
    raise _unknown(session, sale, "debit", debited)


def _compensate(session: Session, clients: SaleClients, sale: Sale, failure_code: str) -> None:
    """Release the reservation, then fail the sale (it stays pending if inventory is away)."""
    released = _call(session, sale, "release", lambda: clients.inventory.release(sale.id))
    if released.status not in (200, 201):
        raise _unknown(session, sale, "release", released)
    _log_step(session, sale, "release", "ok")
    _finish(session, sale, FAILED, failure_code)


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
