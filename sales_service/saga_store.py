"""Where the purchase saga's orders live: the SQL that records, takes and saves them.

Two strategies own a sale while it is driven, behind one interface
(:class:`SaleStore`):

* **row-locked** (:class:`LockedStore`): the driver holds the sale's row lock
  (``SELECT ... FOR UPDATE``, :func:`lock_sale`) in one transaction for the
  whole drive and writes its outcome unconditionally;
* **leased** (a batched purchase, :class:`sales_service.batching.BatchedSale`):
  the order is recorded with its neighbours' by one statement, owned by its
  lease (``lease_until``) alone while it is driven, and its outcome written
  with theirs only if it is still ``pending`` under that lease.

Both record with :func:`record_sales` and save with :func:`save_outcomes`: a
purchase alone is a batch of one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import bindparam, func, or_, select, text
from sqlalchemy.orm import Session

from sales_service import events
from sales_service.models import COMPLETED, PENDING, Sale, SaleLine
from sales_service.saga_run import NewSale, SagaRun
from shopkit.auth import Principal
from shopkit.db import transaction
from shopkit.errors import DATABASE_DOWN_ERRORS, ProblemError

#: How long a freshly recorded (or freshly cancelling) order belongs to the request that
#: recorded it: recovery leaves it alone meanwhile, even with ``--older-than 0``. Longer
#: than any request's deadline, so only an order whose request died is ever taken early.
LEASE_S = 15


@dataclass(frozen=True)
class Recording:
    """One order of a batch to record: who placed it, what, and the id it is to get."""

    principal: Principal
    request: NewSale
    sale_id: uuid.UUID


class NothingRecorded(Exception):
    """The database could not be reached before a batch was sent: none of it was recorded."""


class SaleStore(Protocol):
    """How a purchase records its order, takes it to drive it, and saves the drive."""

    def record(self, order: Recording) -> Sale | None:
        """Commit the order as ``pending`` (see :func:`record_sales`); ``None`` when its
        customer already used its idempotency key."""

    def take(self, sale: Sale) -> Sale | None:
        """Own a sale this store just recorded, to drive it; ``None`` if someone else drives
        it (only possible once its lease ran out)."""

    def save(self, run: SagaRun) -> bool:
        """Write the drive's outcome and commit; whether it was written (a leased sale whose
        lease ran out and that someone else took keeps their outcome)."""


@dataclass(frozen=True)
class LockedStore:
    """The row-locked strategy on one session: a sale is driven under its row lock, taken by
    :func:`lock_sale` and released by the commit that saves the outcome."""

    session: Session

    def record(self, order: Recording) -> Sale | None:
        """Record the order as a batch of one."""
        [sale] = record_sales(self.session, [order])
        return sale

    def take(self, sale: Sale) -> Sale | None:
        """Lock the sale just recorded (leased to us: wait for a lock held for a moment)."""
        return lock_sale(self.session, sale.id, lines=sale.lines, leased=True)

    def save(self, run: SagaRun) -> bool:
        """Write the outcome over the locked row (always written)."""
        [saved] = save_outcomes(self.session, [run], leased=False)
        return saved


_sales = Sale.__table__
_lines = SaleLine.__table__

#: The sale's columns a drive may change; written back in one ``UPDATE`` at its end.
_DRIVEN_COLUMNS = (
    "status",
    "failure_code",
    "failure_detail",
    "product_name",
    "unit_price",
    "total",
    "attempts",
    "updated_at",
    "completed_at",
    "cancelled_at",
)

# Statements built once, with parameters bound by name.
_SALE_FOR_KEY = select(_sales).where(
    _sales.c.customer_id == bindparam("customer_id"),
    _sales.c.idempotency_key == bindparam("idempotency_key"),
)
#: Takes a sale nobody drives: not locked, and not leased to the request that recorded it
#: (a batched drive holds its sale by the lease alone).
_LOCK_SALE = (
    select(_sales)
    .where(
        _sales.c.id == bindparam("sale_id"),
        _sales.c.status == bindparam("status"),
        or_(_sales.c.lease_until.is_(None), _sales.c.lease_until <= func.now()),
    )
    .with_for_update(skip_locked=True)
)
#: The same, waiting for a lock someone holds for a moment (a competing conditional UPDATE
#: re-checking the row): for an order leased to the caller, whom nobody else may drive.
_LOCK_LEASED_SALE = (
    select(_sales)
    .where(_sales.c.id == bindparam("sale_id"), _sales.c.status == bindparam("status"))
    .with_for_update()
)
_LINES_OF = (
    select(_lines).where(_lines.c.sale_id == bindparam("sale_id")).order_by(_lines.c.position)
)
#: Takes a completed cart order's lines out of the cart, unless the customer changed them.
_CLEAR_CART_LINES = text(
    """
    DELETE FROM sales.cart_items AS item
    USING unnest(CAST(:product_ids AS bigint[]), CAST(:quantities AS integer[]))
          AS ordered(product_id, quantity)
    WHERE item.customer_id = :customer_id AND item.product_id = ordered.product_id
      AND item.quantity = ordered.quantity
    """
)
#: Records orders and their lines in one statement (step 1; alone, a batch of one): an
#: order whose customer already used its idempotency key is left out (also when the key
#: comes twice in the batch: the first one is recorded). Rows go in key order, so two
#: batches claiming the same keys wait for each other instead of deadlocking.
_RECORD_SALES = text(
    """
    WITH new AS (
        SELECT * FROM jsonb_to_recordset(CAST(:sales AS jsonb)) AS new(
            id uuid, customer_id bigint, username varchar, product_id bigint, quantity integer,
            line_count integer, idempotency_key varchar, request_fingerprint varchar,
            from_cart boolean, lines jsonb)
    ), sale AS (
        INSERT INTO sales.sales (id, customer_id, username, product_id, quantity, line_count,
                                 status, idempotency_key, request_fingerprint, from_cart,
                                 history, lease_until)
        SELECT id, customer_id, username, product_id, quantity, line_count,
               'pending', idempotency_key, request_fingerprint, from_cart,
               jsonb_build_array(jsonb_build_object('status', 'pending', 'at', now())),
               now() + make_interval(secs => :lease_s)
        FROM new
        ORDER BY customer_id, idempotency_key
        ON CONFLICT (customer_id, idempotency_key) WHERE idempotency_key IS NOT NULL
        DO NOTHING
        RETURNING *
    ), lines AS (
        INSERT INTO sales.sale_lines (sale_id, product_id, position, quantity)
        SELECT sale.id, line.product_id, line.position, line.quantity
        FROM sale JOIN new ON new.id = sale.id,
             jsonb_to_recordset(new.lines) AS line(product_id bigint, position integer,
                                                   quantity integer)
    )
    SELECT * FROM sale
    """
)
#: Writes drives' outcomes in one statement: each sale's new state, its lines' reserved
#: prices and names (none when nothing was reserved), and the steps it took (in order, each
#: at the moment it was taken). ``leased``: each only if its sale is still ``pending`` under
#: the lease its driver got when recording it (a sale whose lease ran out and that someone
#: else took, recovery or a replay, is left as they wrote it); otherwise the driver holds
#: the row lock and every outcome is written. Returns the ids written.
_SAVE_OUTCOMES = text(
    """
    WITH saved AS (
        UPDATE sales.sales AS sale
        SET status = run.status, failure_code = run.failure_code,
            failure_detail = run.failure_detail, product_name = run.product_name,
            unit_price = run.unit_price, total = run.total, attempts = run.attempts,
            updated_at = run.updated_at, completed_at = run.completed_at,
            cancelled_at = run.cancelled_at, lease_until = NULL,
            history = sale.history || run.history
        FROM jsonb_to_recordset(CAST(:runs AS jsonb)) AS run(
            sale_id uuid, lease_until timestamptz, status varchar, failure_code varchar,
            failure_detail jsonb, product_name varchar, unit_price numeric, total numeric,
            attempts integer, updated_at timestamptz, completed_at timestamptz,
            cancelled_at timestamptz, history jsonb, steps jsonb, priced jsonb)
        WHERE sale.id = run.sale_id
          AND (NOT CAST(:leased AS boolean)
               OR (sale.status = 'pending' AND sale.lease_until = run.lease_until))
        RETURNING sale.id, run.steps, run.priced
    ), priced AS (
        UPDATE sales.sale_lines AS line
        SET unit_price = priced.unit_price, product_name = priced.product_name
        FROM saved, jsonb_to_recordset(saved.priced)
             AS priced(product_id bigint, unit_price numeric, product_name varchar)
        WHERE line.sale_id = saved.id AND line.product_id = priced.product_id
    ), logged AS (
        INSERT INTO sales.saga_steps (sale_id, step, outcome, detail, created_at)
        SELECT saved.id, taken.step ->> 'step', taken.step ->> 'outcome', taken.step -> 'detail',
               CAST(taken.step ->> 'at' AS timestamptz)
        FROM saved, jsonb_array_elements(saved.steps) WITH ORDINALITY AS taken(step, position)
        ORDER BY saved.id, taken.position
    )
    SELECT id FROM saved
    """
)


def record_sales(session: Session, orders: Sequence[Recording]) -> list[Sale | None]:
    """Step 1: commit orders and their lines as ``pending``, in one statement and one commit
    (a purchase alone is a batch of one).

    Each order gets its new sale, leased for :data:`LEASE_S` seconds to the request
    that placed it (recovery leaves it alone until it has been driven once or the
    lease ran out, so it can never take it before its driver), or ``None`` when its
    customer already used its idempotency key (earlier, or in this same batch): that
    request looks the sale up with :func:`existing_sale`. Two requests racing with one
    key meet on the unique index: the second waits for the first to commit. Each order
    recorded writes ``shop.order.placed.v1`` in the same transaction. Raises
    :class:`NothingRecorded` if no connection could be had.
    """
    try:
        connection = session.connection()
    except DATABASE_DOWN_ERRORS as exc:
        raise NothingRecorded() from exc
    with transaction(session):
        rows = connection.execute(
            _RECORD_SALES,
            {"lease_s": LEASE_S, "sales": json.dumps([_new_sale(order) for order in orders])},
        ).all()
        by_id = {row.id: row for row in rows}
        recorded = [
            _recorded(row, order.request) if (row := by_id.get(order.sale_id)) is not None else None
            for order in orders
        ]
        events.emit_placed(session, [sale for sale in recorded if sale is not None])
    return recorded


def save_outcomes(session: Session, runs: Sequence[SagaRun], *, leased: bool) -> list[bool]:
    """Write drives' outcomes at once (one statement, one commit); which were written.

    ``leased``: a drive is written only if its sale is still ``pending`` under the
    lease its request got when recording it; otherwise someone else took the sale
    after the lease ran out and their outcome stands. Without it the caller holds
    each sale's row lock (released by this commit) and every outcome is written.
    A completed cart order takes its lines out of the cart in the same transaction, and
    each sale the drive settled writes its event (:mod:`sales_service.events`) there too.
    """
    with transaction(session):
        written = set(
            session.connection()
            .execute(
                _SAVE_OUTCOMES,
                {
                    "runs": json.dumps([_outcome(run) for run in runs], default=str),
                    "leased": leased,
                },
            )
            .scalars()
        )
        kept = [run for run in runs if run.sale.id in written]
        for run in kept:
            _clear_cart(session, run.sale)
        events.emit_settled(session, [run.sale for run in kept if run.settled])
    for run in kept:
        run.count_settled()
    return [run.sale.id in written for run in runs]


def save_leased(session: Session, runs: Sequence[SagaRun]) -> list[bool]:
    """The batched path's save: :func:`save_outcomes` of sales owned by their lease."""
    return save_outcomes(session, runs, leased=True)


def _outcome(run: SagaRun) -> dict[str, Any]:
    """A drive's result as one row of :data:`_SAVE_OUTCOMES` (JSON-ready but for scalars
    that ``str`` renders as PostgreSQL reads them: datetimes, decimals, ids)."""
    sale = run.sale
    return {
        **{name: getattr(sale, name) for name in _DRIVEN_COLUMNS},
        "sale_id": sale.id,
        "lease_until": sale.lease_until,
        "failure_detail": sale.failure_detail,
        "history": run.history,
        "steps": run.steps,
        "priced": [
            {
                "product_id": line.product_id,
                "unit_price": line.unit_price,
                "product_name": line.product_name,
            }
            for line in (sale.lines if run.priced else [])
        ],
    }


def _clear_cart(session: Session, sale: Sale) -> None:
    """Take a completed cart order's lines out of the cart (in the caller's transaction)."""
    if sale.from_cart and sale.status == COMPLETED:
        session.connection().execute(
            _CLEAR_CART_LINES,
            {
                "customer_id": sale.customer_id,
                "product_ids": [line.product_id for line in sale.lines],
                "quantities": [line.quantity for line in sale.lines],
            },
        )


def existing_sale(session: Session, customer_id: int, request: NewSale) -> Sale:
    """The sale this customer recorded earlier under ``request``'s idempotency key (which
    just conflicted); 422 ``idempotency_key_reused`` if it was a different request."""
    assert request.idempotency_key is not None  # only a key can conflict
    found = {"customer_id": customer_id, "idempotency_key": request.idempotency_key}
    existing = session.connection().execute(_SALE_FOR_KEY, found).one()
    sale = _sale_from(existing, load_lines(session, existing.id))
    session.rollback()
    return _check_same_request(sale, request)


def find_by_key(session: Session, customer_id: int, idempotency_key: str) -> Sale | None:
    """The sale this customer placed under ``idempotency_key``, if any (with its lines)."""
    row = (
        session.connection()
        .execute(_SALE_FOR_KEY, {"customer_id": customer_id, "idempotency_key": idempotency_key})
        .first()
    )
    if row is None:
        return None
    return _sale_from(row, load_lines(session, row.id))


def lock_sale(
    session: Session,
    sale_id: uuid.UUID,
    status: str = PENDING,
    lines: list[SaleLine] | None = None,
    *,
    leased: bool = False,
) -> Sale | None:
    """Lock a sale in ``status`` to drive it; ``None`` if it moved on or someone else drives it
    (it is locked, or still leased to the request that recorded it).

    ``leased``: the caller just recorded the sale (or started its cancellation) and
    holds its lease, so it waits for the lock (bounded by ``lock_timeout``) instead
    of skipping a row that another statement holds for an instant.

    The sale comes back detached with its lines (``lines`` when the caller has them
    already): the drive changes it in memory and :class:`LockedStore` writes it back
    with one ``UPDATE`` (cheaper than the ORM's unit of work).
    """
    statement = _LOCK_LEASED_SALE if leased else _LOCK_SALE
    row = session.connection().execute(statement, {"sale_id": sale_id, "status": status}).first()
    if row is None:
        return None
    return _sale_from(row, lines if lines is not None else load_lines(session, sale_id))


def load_lines(session: Session, sale_id: uuid.UUID) -> list[SaleLine]:
    """The lines of a sale, in the customer's order, as detached objects."""
    rows = session.connection().execute(_LINES_OF, {"sale_id": sale_id})
    return [SaleLine(**row._mapping) for row in rows]


def _check_same_request(sale: Sale, request: NewSale) -> Sale:
    if sale.request_fingerprint != request.fingerprint:
        raise ProblemError(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was already used for a different purchase.",
            sale_id=str(sale.id),
        )
    return sale


def _sale_from(row: Any, lines: list[SaleLine]) -> Sale:
    """A detached :class:`Sale` holding ``row`` and its lines: changed freely, written back
    explicitly."""
    sale = Sale(**row._mapping)
    sale.lines = lines
    return sale


def _new_sale(order: Recording) -> dict[str, Any]:
    """One row of :data:`_RECORD_SALES`: the order's columns (alone or in a batch)."""
    request = order.request
    single = request.lines[0] if len(request.lines) == 1 else (None, None)
    return {
        "id": str(order.sale_id),
        "customer_id": order.principal.customer_id,
        "username": order.principal.subject,
        "product_id": single[0],
        "quantity": single[1],
        "line_count": len(request.lines),
        "idempotency_key": request.idempotency_key,
        "request_fingerprint": request.fingerprint,
        "from_cart": request.from_cart,
        "lines": [
            {"product_id": product_id, "position": position, "quantity": quantity}
            for position, (product_id, quantity) in enumerate(request.lines)
        ],
    }


def _recorded(row: Any, request: NewSale) -> Sale:
    lines = [
        SaleLine(sale_id=row.id, product_id=product_id, position=position, quantity=quantity)
        for position, (product_id, quantity) in enumerate(request.lines)
    ]
    return _sale_from(row, lines)
