"""The purchase saga: record pending → reserve stock → debit wallet → completed.

The design is docs/architecture.rst, "The sale: one saga, exactly once".

An order has 1 to 50 lines; inventory reserves all of them in one
all-or-nothing call and the wallet is debited the order's total once. Every
remote step carries a deterministic idempotency key, so driving a sale again
(after a timeout, a crash or a restart) replays what already happened instead
of doing it twice:

* reserve refused (``insufficient_stock`` naming every short line, unknown
  product) → ``failed``, nothing to undo;
* debit refused (``insufficient_funds``, inactive customer) → release the
  reservation, then ``failed``;
* debit accepted → ``completed``;
* a dependency unreachable, or an answer we cannot interpret → the sale stays
  ``pending`` and :mod:`sales_service.recovery` finishes it later.

The debit is the pivot: once it succeeded the sale can only complete. A
completed order's stock and money come back only through its cancellation
(:mod:`sales_service.cancellation`), a second saga built from the same parts.

A sale is driven by exactly one worker at a time. A new order is leased to the
request that recorded it (``lease_until``); recovery and replays take an order
only when it is neither leased nor locked. How the order is recorded, owned
while it is driven and saved is the store's business
(:mod:`sales_service.saga_store`): alone, under its row lock; in a batch
(:mod:`sales_service.batching`), by its lease alone.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from sales_service import observe
from sales_service.batching import Batcher
from sales_service.clients import SaleClients
from sales_service.models import COMPLETED, FAILED, PENDING, Sale
from sales_service.saga_run import NewSale, SagaRun, now
from sales_service.saga_store import (
    LockedStore,
    NothingRecorded,
    Recording,
    SaleStore,
    existing_sale,
    lock_sale,
)
from shopkit import faults
from shopkit.auth import Principal
from shopkit.db import transaction
from shopkit.errors import DATABASE_DOWN_ERRORS, Conflict, DatabaseUnavailable, ProblemError
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


def purchase(
    session: Session,
    clients: SaleClients,
    principal: Principal,
    request: NewSale,
    *,
    batcher: Batcher | None = None,
) -> tuple[Sale, bool]:
    """Record and drive a purchase. Returns ``(sale, replayed)``.

    A replayed client key returns the existing sale as it stands, driving it
    first if it is still pending and nobody else is driving it. With a
    ``batcher`` (batching on), the purchases running at the same moment in this
    process share their steps (:mod:`sales_service.batching`): one statement
    records their orders, one call reserves, one debits, one statement writes
    their outcomes, and each new sale is owned by its lease, not a row lock,
    while it is driven.
    """
    clients.check_available()
    if batcher is None or not batcher.enabled:
        return _purchase(session, clients, LockedStore(session), principal, request)
    batched = batcher.for_sale()
    try:
        return _purchase(session, batched, batched, principal, request)
    finally:
        batched.close()


def _purchase(
    session: Session,
    clients: SaleClients,
    store: SaleStore,
    principal: Principal,
    request: NewSale,
) -> tuple[Sale, bool]:
    """Step 1, then the drive: the new sale by ``store``'s strategy, a replay under its lock."""
    sale, created = _record(session, store, principal, request, uuid.uuid4())
    if created:
        faults.crash_point("record")
    if not created and sale.status != PENDING:
        return sale, True
    with database_kept(sale.id, PENDING):
        if created:
            taken = store.take(sale)
        else:
            store = LockedStore(session)
            taken = lock_sale(session, sale.id, lines=sale.lines)
        if taken is None:
            session.rollback()
            current = session.get(Sale, sale.id, populate_existing=True)
            assert current is not None
            if current.status == PENDING:
                raise _in_progress(sale.id)
            return current, not created
        return drive(session, clients, taken, store), not created


def _record(
    session: Session, store: SaleStore, principal: Principal, request: NewSale, sale_id: uuid.UUID
) -> tuple[Sale, bool]:
    """Step 1, alone or in a batch: ``(sale, created)``; 503 if the database fails.

    With a client idempotency key this customer already used, the existing sale is
    returned (``created`` false); a different request under the same key is 422
    ``idempotency_key_reused``.
    """
    assert principal.customer_id is not None
    try:
        # One unit of work with whatever the caller's transaction holds (a checkout's lock,
        # sales_service.cart): it ends once the order is recorded, also when a batch
        # recorded it on a connection of its own.
        with transaction(session):
            sale = store.record(Recording(principal, request, sale_id))
        if sale is not None:
            return sale, True
        return existing_sale(session, principal.customer_id, request), False
    except NothingRecorded as exc:
        raise DatabaseUnavailable() from exc
    except DATABASE_DOWN_ERRORS as exc:
        # The commit may have reached the server: say which order it would be.
        raise DatabaseUnavailable(
            "The database failed while the order was being recorded; it may have been "
            "recorded (then it is pending and will be settled): look it up or retry with "
            "the same Idempotency-Key.",
            sale_id=str(sale_id),
            sale_status="unknown",
        ) from exc


def drive(
    session: Session, clients: SaleClients, sale: Sale, store: SaleStore | None = None
) -> Sale:
    """Run (or resume) the purchase saga of a pending sale that ``store`` owns (by default
    locked by :func:`~sales_service.saga_store.lock_sale` on ``session``)."""
    return run_drive(session, store or LockedStore(session), sale, lambda run: _steps(run, clients))


def _steps(run: SagaRun, clients: SaleClients) -> None:
    sale = run.sale
    # Step 2: reserve every line's stock at once (compensatable).
    lines = [(line.product_id, line.quantity) for line in sale.lines]
    reserved = call_step(run, "reserve", lambda: clients.inventory.reserve(sale.id, lines))
    if reserved.status in (409, 404) and reserved.code in RESERVE_REFUSALS:
        run.log("reserve", "refused", code=reserved.code)
        sale.failure_detail = _refusal_detail(reserved)
        run.finish(FAILED, RESERVE_REFUSALS[reserved.code])
        return
    if reserved.status != 201:
        raise unknown_answer(run, "reserve", reserved)
    run.price(reserved.body)
    run.log("reserve", "ok", total=str(sale.total))

    # Step 3: debit the wallet (the pivot).
    debited = call_step(
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
    raise unknown_answer(run, "debit", debited)


def _compensate(run: SagaRun, clients: SaleClients, failure_code: str) -> None:
    """Release the reservation, then fail the sale (it stays pending if inventory is away)."""
    released = call_step(run, "release", lambda: clients.inventory.release(run.sale.id))
    if released.status not in (200, 201):
        raise unknown_answer(run, "release", released)
    run.log("release", "ok")
    run.finish(FAILED, failure_code)


def _refusal_detail(answer: ServiceResponse) -> dict[str, Any] | None:
    """What a refused reservation named: the short products, or the unknown ones."""
    body = answer.body if isinstance(answer.body, dict) else {}
    for name in ("products", "product_ids"):
        if isinstance(body.get(name), list):
            return {name: body[name]}
    return None


# --- the parts every drive shares (the cancellation saga too) -----------------------------


class SagaIncomplete(ProblemError):
    """503 ``sale_pending``: the order is recorded but its outcome is not known yet; it stays
    pending (or cancelling) until recovery settles it.

    ``reason`` says why: ``dependency_unavailable`` (``dependency`` names it) or
    ``database_unavailable``. A 503 with any other code means nothing was recorded.
    """

    def __init__(
        self,
        sale_id: uuid.UUID,
        detail: str,
        dependency: str | None = None,
        sale_status: str = PENDING,
        reason: str = "dependency_unavailable",
    ) -> None:
        super().__init__(
            503,
            "sale_pending",
            detail,
            headers={"Retry-After": "5"},
            sale_id=str(sale_id),
            sale_status=sale_status,
            reason=reason,
            dependency=dependency,
        )


def run_drive(
    session: Session, store: SaleStore, sale: Sale, steps: Callable[[SagaRun], None]
) -> Sale:
    """Run ``steps`` on a sale ``store`` owns and save what they did.

    Raises :class:`SagaIncomplete` (after saving the attempt) when the outcome
    cannot be decided now; the sale then keeps its status. Should a leased sale's
    lease run out first and someone take it, their outcome stands: the sale as
    they left it is returned (409 ``sale_in_progress`` while they still drive it).
    """
    run = SagaRun(sale)
    sale.attempts += 1
    sale.updated_at = now()
    try:
        steps(run)
    except SagaIncomplete:
        store.save(run)
        raise
    if store.save(run):
        return sale
    current = session.get(Sale, sale.id, populate_existing=True)
    assert current is not None
    log.warning("sale %s: its lease ran out and %s was kept", sale.id, current.status)
    if current.status == PENDING:
        raise _in_progress(sale.id)
    return current


def call_step(run: SagaRun, step: str, call: Callable[[], ServiceResponse]) -> ServiceResponse:
    """Make one remote step's call; a dependency that cannot be reached leaves the sale as is.

    Right after the answer arrived (nothing committed yet) is the step's crash point
    (:func:`shopkit.faults.crash_point`): chaos tests end the worker there.
    """
    try:
        with observe.open_step(run.sale.id, step, run.sale.attempts) as opened:
            run.open_steps[step] = opened  # closed when the step's outcome is logged
            answer = call()
            opened.answered(answer)
    except DependencyUnavailable as exc:
        run.log(step, "unavailable")
        dependency = exc.extra.get("dependency")
        settled = "cancellation" if run.sale.status != PENDING else "purchase"
        raise SagaIncomplete(
            run.sale.id,
            f"The {dependency} service is unavailable; the {settled} is {run.sale.status} "
            "and will be settled automatically.",
            dependency=dependency,
            sale_status=run.sale.status,
        ) from exc
    faults.crash_point(step)
    return answer


def unknown_answer(run: SagaRun, step: str, answer: ServiceResponse) -> SagaIncomplete:
    """Log an answer the saga cannot interpret; the sale keeps its status and is retried."""
    run.log(step, "unexpected", status=answer.status, code=answer.code)
    log.error("sale %s: unexpected %s answer %s %s", run.sale.id, step, answer.status, answer.code)
    return SagaIncomplete(
        run.sale.id,
        f"The {step} step got an unexpected answer; will retry.",
        sale_status=run.sale.status,
    )


@contextmanager
def database_kept(sale_id: uuid.UUID, sale_status: str) -> Iterator[None]:
    """Turn the database failing under a recorded order into 503 ``sale_pending``."""
    try:
        yield
    except DATABASE_DOWN_ERRORS as exc:
        log.warning("sale %s: the database failed mid-drive (%s)", sale_id, type(exc).__name__)
        raise SagaIncomplete(
            sale_id,
            f"The database became unavailable; the order is {sale_status} and will be "
            "settled automatically.",
            sale_status=sale_status,
            reason="database_unavailable",
        ) from exc


def _in_progress(sale_id: uuid.UUID) -> Conflict:
    return Conflict(
        "sale_in_progress",
        "This purchase is being processed right now; retry shortly.",
        sale_id=str(sale_id),
    )
