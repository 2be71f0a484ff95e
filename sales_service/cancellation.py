"""The cancellation saga: ``completed → cancelling → cancelled``, refunded and restocked once.

Cancelling is a second saga built from the purchase saga's parts
(:mod:`sales_service.saga`), with the same rules:

1. ``completed → cancelling`` is one conditional ``UPDATE`` committed before
   anything else (a shipment racing it loses, or wins, as a whole); the
   client's ``Idempotency-Key``, if any, is stored with it.
2. Credit the order's total back to the wallet (``{sale_id}:refund``; for a
   second cancellation after a refused refund, ``{sale_id}:refund-2``...).
3. Return every line's stock to inventory (``{sale_id}:return``); inventory
   accepts it only once the refund is recorded.
4. ``cancelled``.

A refund the wallet refuses for good (``balance_limit``: it would go over its
maximum) ends the cancellation before anything was refunded or returned: the
order is ``completed`` again and the caller gets 409 ``refund_refused``; it may
cancel again once the wallet has room.

A dependency that cannot be reached leaves the order ``cancelling`` (503);
recovery drives it on with the same keys, so nothing is refunded or returned
twice however often it is driven.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Boolean, bindparam, or_, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from sales_service.clients import SaleClients
from sales_service.lifecycle import invalid_transition
from sales_service.models import CANCELLED, CANCELLING, COMPLETED, Sale
from sales_service.saga import call_step, database_kept, run_drive, unknown_answer
from sales_service.saga_run import SagaRun, history_entry
from sales_service.saga_store import LEASE_S, LockedStore, load_lines, lock_sale
from shopkit.auth import Principal
from shopkit.db import transaction
from shopkit.errors import Conflict, NotFound, ProblemError

_sales = Sale.__table__

#: Refusals of the refund that end the cancellation (nothing was refunded or returned).
REFUND_REFUSALS = frozenset({"balance_limit"})

#: ``completed → cancelling`` for the buyer (or anyone, for an admin), as one statement.
_START = (
    update(_sales)
    .where(
        _sales.c.id == bindparam("sale_id"),
        _sales.c.status == COMPLETED,
        or_(bindparam("is_admin", type_=Boolean), _sales.c.customer_id == bindparam("caller_id")),
    )
    .values(
        status=CANCELLING,
        cancel_key=bindparam("new_cancel_key"),
        updated_at=bindparam("new_updated_at"),
        lease_until=bindparam("new_lease_until"),
        history=_sales.c.history.op("||")(bindparam("entry", type_=JSONB)),
    )
    .returning(_sales.c.id)
)


def cancel(
    session: Session,
    clients: SaleClients,
    principal: Principal,
    sale_id: uuid.UUID,
    idempotency_key: str | None,
) -> tuple[Sale, bool]:
    """Cancel a completed order for its buyer or an admin. Returns ``(sale, replayed)``.

    404 when the order does not exist or is someone else's; 409
    ``invalid_transition`` (naming the current status) from any status but
    ``completed``, except that a retry under the first cancellation's
    ``Idempotency-Key`` replays it (driving it on if it is still
    ``cancelling`` and nobody else is); 503 when a dependency is away.
    """
    now = datetime.now(UTC)
    with transaction(session):
        started = session.execute(
            _START,
            {
                "sale_id": sale_id,
                "is_admin": principal.is_admin,
                "caller_id": principal.customer_id,
                "new_cancel_key": idempotency_key,
                "new_updated_at": now,
                "new_lease_until": now + timedelta(seconds=LEASE_S),
                "entry": [history_entry(CANCELLING, now)],
            },
        ).first()
    if started is None:
        return _not_started(session, clients, principal, sale_id, idempotency_key), True
    with database_kept(sale_id, CANCELLING):
        # Leased to us (``lease_until``): recovery cannot take it before this lock.
        locked = lock_sale(session, sale_id, CANCELLING, leased=True)
        if locked is None:  # someone drives it (only possible once the lease ran out)
            session.rollback()
            raise _in_progress(sale_id)
        return _refused_or(drive_cancellation(session, clients, locked)), False


def _refused_or(sale: Sale) -> Sale:
    """``sale`` as its cancellation left it; a cancellation refused for good is 409."""
    if sale.status != COMPLETED:
        return sale
    raise ProblemError(
        409,
        "refund_refused",
        "The wallet cannot take this order's refund back: it would go over its balance "
        "limit. The order stays completed; cancel it again once the wallet has room.",
        sale_id=str(sale.id),
        sale_status=sale.status,
        reason="balance_limit",
    )


def _not_started(
    session: Session,
    clients: SaleClients,
    principal: Principal,
    sale_id: uuid.UUID,
    idempotency_key: str | None,
) -> Sale:
    """Why the order did not move to ``cancelling``: a replay, or a refusal."""
    sale = session.get(Sale, sale_id)
    if sale is None or not (principal.is_admin or sale.customer_id == principal.customer_id):
        raise NotFound(f"No sale {sale_id}.")
    replay = idempotency_key is not None and sale.cancel_key == idempotency_key
    if not replay or sale.status not in (CANCELLING, CANCELLED):
        raise invalid_transition(sale, "cancelled")
    if sale.status == CANCELLED:
        return sale
    session.rollback()
    locked = lock_sale(session, sale_id, CANCELLING)
    if locked is None:
        session.rollback()
        raise _in_progress(sale_id)
    return _refused_or(drive_cancellation(session, clients, locked))


def _in_progress(sale_id: uuid.UUID) -> Conflict:
    return Conflict(
        "cancellation_in_progress",
        "This order's cancellation is being processed right now; retry shortly.",
        sale_id=str(sale_id),
    )


def drive_cancellation(session: Session, clients: SaleClients, sale: Sale) -> Sale:
    """Run (or resume) the refund saga of a ``cancelling`` order locked by ``lock_sale``."""
    if not sale.lines:
        sale.lines = load_lines(session, sale.id)
    return run_drive(session, LockedStore(session), sale, lambda run: _refund_steps(run, clients))


def _refund_steps(run: SagaRun, clients: SaleClients) -> None:
    sale = run.sale
    total = sale.total
    assert total is not None  # a paid order always has its total
    # A new cancellation after a refused refund asks again under a new key (the refusal is
    # stored under the first); the ledger's one refund per sale still holds.
    attempt = sum(1 for entry in sale.history or [] if entry.get("status") == CANCELLING)
    refunded = call_step(
        run,
        "refund",
        lambda: clients.customers.refund(sale.id, sale.customer_id, total, attempt),
    )
    if refunded.status == 409 and refunded.code in REFUND_REFUSALS:
        run.log("refund", "refused", code=refunded.code)
        run.reopen(COMPLETED)
        return
    if not (
        refunded.status == 201 or (refunded.status == 409 and refunded.code == "already_recorded")
    ):
        raise unknown_answer(run, "refund", refunded)
    run.log("refund", "ok", amount=str(sale.total))
    returned = call_step(run, "return", lambda: clients.inventory.return_stock(sale.id))
    if returned.status != 200:
        raise unknown_answer(run, "return", returned)
    run.log("return", "ok")
    run.finish(CANCELLED)
