"""The purchase saga: record pending → reserve stock → debit wallet → completed.

The design is docs/architecture.rst, "The sale: one saga, exactly once".

An order has 1 to 50 lines; inventory reserves all of them in one
all-or-nothing call and the wallet is debited the order's total once.

A sale is driven by exactly one worker at a time. A new order is leased to the
request that recorded it (``lease_until``, :data:`LEASE_S`); recovery and replays
take an order only when it is neither leased nor locked. Alone (batching off),
the driver also holds the sale's row lock (``SELECT ... FOR UPDATE``) in one
transaction for the whole drive. In a batch (:mod:`sales_service.batching`) the
order is recorded by one statement with its neighbours' (:func:`record_sales`),
owned by its lease alone while it is driven (:func:`drive_leased`), and its
outcome written with theirs only if it is still pending under that lease
(:func:`save_leased`). Every remote step carries a deterministic
idempotency key, so driving a sale again (after a timeout, a crash or a
restart) replays what already happened instead of doing it twice:

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
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, or_, select, text
from sqlalchemy.orm import Session

from sales_service import observe
from sales_service.clients import SaleClients
from sales_service.models import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    Sale,
    SaleLine,
)
from shopkit import faults
from shopkit.auth import Principal
from shopkit.errors import DATABASE_DOWN_ERRORS, Conflict, DatabaseUnavailable, ProblemError
from shopkit.service_client import DependencyUnavailable, ServiceResponse

if TYPE_CHECKING:
    from sales_service.batching import BatchedSale, Batcher

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


#: How long a freshly recorded (or freshly cancelling) order belongs to the request that
#: recorded it: recovery leaves it alone meanwhile, even with ``--older-than 0``. Longer
#: than any request's deadline, so only an order whose request died is ever taken early.
LEASE_S = 15


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


@dataclass(frozen=True)
class NewSale:
    """What a customer asked to buy: ``(product_id, quantity)`` lines, distinct products.

    ``idempotency_key`` is the client's optional key; ``from_cart`` marks an
    order placed from the cart, whose lines leave the cart when it completes.
    """

    lines: tuple[tuple[int, int], ...]
    idempotency_key: str | None = None
    fingerprint: str | None = None
    from_cart: bool = False


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
#: (a batched drive holds its sale by the lease alone, see :func:`drive_leased`).
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
#: Writes a drive's outcome in one round trip: each line's reserved price and name (none
#: when nothing was reserved), the steps it took (in order, each at the moment it was
#: taken), and the sale's new state.
_SAVE = text(
    """
    WITH priced AS (
        UPDATE sales.sale_lines AS line
        SET unit_price = priced.unit_price, product_name = priced.product_name
        FROM unnest(CAST(:product_ids AS bigint[]), CAST(:unit_prices AS numeric[]),
                    CAST(:product_names AS varchar[]))
             AS priced(product_id, unit_price, product_name)
        WHERE line.sale_id = :sale_id AND line.product_id = priced.product_id
    ), logged AS (
        INSERT INTO sales.saga_steps (sale_id, step, outcome, detail, created_at)
        SELECT :sale_id, taken.step ->> 'step', taken.step ->> 'outcome', taken.step -> 'detail',
               CAST(taken.step ->> 'at' AS timestamptz)
        FROM jsonb_array_elements(CAST(:steps AS jsonb)) WITH ORDINALITY AS taken(step, position)
        ORDER BY taken.position
    )
    UPDATE sales.sales
    SET status = :status, failure_code = :failure_code,
        failure_detail = CAST(:failure_detail AS jsonb), product_name = :product_name,
        unit_price = :unit_price, total = :total, attempts = :attempts,
        updated_at = :updated_at, completed_at = :completed_at, cancelled_at = :cancelled_at,
        lease_until = NULL, history = history || CAST(:history AS jsonb)
    WHERE id = :sale_id
    """
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
#: Writes many drives' outcomes in one statement (the batched path's end), each only if
#: its sale is still ``pending`` under the lease its driver got when recording it: a sale
#: whose lease ran out and that someone else took (recovery, a replay) is left as they
#: wrote it. Returns the ids written.
_SAVE_LEASED = text(
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
        WHERE sale.id = run.sale_id AND sale.status = 'pending'
          AND sale.lease_until = run.lease_until
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


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


#: The step logged when a sale settles in each status.
_FINAL_STEP = {COMPLETED: "complete", FAILED: "fail", CANCELLED: "cancel"}


def _now() -> datetime:
    return datetime.now(UTC)


def history_entry(status: str, at: datetime) -> dict[str, str]:
    """One entry of an order's ``history``."""
    return {"status": status, "at": at.isoformat()}


def _maybe_crash(step: str) -> None:
    if os.environ.get(CRASH_AFTER_ENV) == step or faults.crash_after(step):
        log.critical("chaos: exiting after %s as %s or a live fault asks", step, CRASH_AFTER_ENV)
        os._exit(70)


@dataclass
class SagaRun:
    """One drive of a sale: the sale as it evolves, and the steps to log with it."""

    sale: Sale
    steps: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, str]] = field(default_factory=list)
    priced: bool = False
    open_steps: dict[str, observe.OpenStep] = field(default_factory=dict)
    settled: bool = False

    def log(self, step: str, outcome: str, *, at: datetime | None = None, **detail: Any) -> None:
        """Note a step; it is written with the sale's new state when the drive ends, with the
        moment it happened (``at``, by default now) as its ``created_at``."""
        moment = (at or _now()).isoformat()
        self.steps.append({"step": step, "outcome": outcome, "detail": detail, "at": moment})
        observe.close_step(self.open_steps.pop(step, None), outcome)

    def finish(self, status: str, failure_code: str | None = None) -> None:
        """Settle the sale in ``status`` (``completed``, ``failed`` or ``cancelled``)."""
        sale = self.sale
        sale.status = status
        sale.failure_code = failure_code
        sale.updated_at = _now()
        if status == COMPLETED:
            sale.completed_at = sale.updated_at
        elif status == CANCELLED:
            sale.cancelled_at = sale.updated_at
        self.history.append(history_entry(status, sale.updated_at))
        sale.history = [*(sale.history or []), self.history[-1]]
        self.log(_FINAL_STEP[status], "ok", at=sale.updated_at, code=failure_code)
        self.settled = True

    def reopen(self, status: str) -> None:
        """Put the sale back in ``status``: a cancellation refused for good (nothing was
        refunded or returned) leaves the order as it was. ``history`` shows the way back; it
        settles no sale, so nothing is counted."""
        sale = self.sale
        sale.status = status
        sale.updated_at = _now()
        self.history.append(history_entry(status, sale.updated_at))
        sale.history = [*(sale.history or []), self.history[-1]]

    def price(self, reserved: dict[str, Any]) -> None:
        """Take each line's unit price and name from the reservation's answer."""
        sale = self.sale
        items = reserved.get("items") or [reserved]
        by_product = {int(item["product_id"]): item for item in items}
        for line in sale.lines:
            item = by_product[line.product_id]
            line.unit_price = Decimal(str(item["unit_price"]))
            line.product_name = str(item["name"])
        sale.total = sum((line.line_total for line in sale.lines), Decimal("0.00"))  # type: ignore[misc]
        if len(sale.lines) == 1:
            sale.product_name = sale.lines[0].product_name
            sale.unit_price = sale.lines[0].unit_price
        self.priced = True

    def save(self, session: Session) -> None:
        """Write the sale's new state, its lines' prices and its steps, and commit.

        Committing releases the sale's lock. A cart order that completed takes
        its lines out of the cart in the same transaction.
        """
        connection = session.connection()
        sale = self.sale
        priced = sale.lines if self.priced else []
        connection.execute(
            _SAVE,
            {
                **{name: getattr(sale, name) for name in _DRIVEN_COLUMNS},
                "sale_id": sale.id,
                "failure_detail": _json(sale.failure_detail),
                "history": json.dumps(self.history),
                "steps": json.dumps(self.steps),
                "product_ids": [line.product_id for line in priced],
                "unit_prices": [line.unit_price for line in priced],
                "product_names": [line.product_name for line in priced],
            },
        )
        self.clear_cart(session)
        session.commit()
        self.count_settled()

    def clear_cart(self, session: Session) -> None:
        """Take a completed cart order's lines out of the cart (in the caller's transaction)."""
        sale = self.sale
        if sale.from_cart and sale.status == COMPLETED:
            session.connection().execute(
                _CLEAR_CART_LINES,
                {
                    "customer_id": sale.customer_id,
                    "product_ids": [line.product_id for line in sale.lines],
                    "quantities": [line.quantity for line in sale.lines],
                },
            )

    def count_settled(self) -> None:
        """Count the sale's outcome once its new state is committed (if the drive settled it)."""
        if self.settled:
            observe.settled(self.sale.status, self.sale.failure_code)

    def outcome(self) -> dict[str, Any]:
        """The drive's result as one row of :data:`_SAVE_LEASED` (JSON-ready but for scalars
        that ``str`` renders as PostgreSQL reads them: datetimes, decimals, ids)."""
        sale = self.sale
        return {
            **{name: getattr(sale, name) for name in _DRIVEN_COLUMNS},
            "sale_id": sale.id,
            "lease_until": sale.lease_until,
            "failure_detail": sale.failure_detail,
            "history": self.history,
            "steps": self.steps,
            "priced": [
                {
                    "product_id": line.product_id,
                    "unit_price": line.unit_price,
                    "product_name": line.product_name,
                }
                for line in (sale.lines if self.priced else [])
            ],
        }


def _sale_from(row: Any, lines: list[SaleLine]) -> Sale:
    """A detached :class:`Sale` holding ``row`` and its lines: changed freely, written back
    explicitly."""
    sale = Sale(**row._mapping)
    sale.lines = lines
    return sale


def load_lines(session: Session, sale_id: uuid.UUID) -> list[SaleLine]:
    """The lines of a sale, in the customer's order, as detached objects."""
    rows = session.connection().execute(_LINES_OF, {"sale_id": sale_id})
    return [SaleLine(**row._mapping) for row in rows]


def _sale_columns(principal: Principal, request: NewSale) -> dict[str, Any]:
    """The columns a new order is recorded with, alone or in a batch (but its id)."""
    single = request.lines[0] if len(request.lines) == 1 else (None, None)
    return {
        "customer_id": principal.customer_id,
        "username": principal.subject,
        "product_id": single[0],
        "quantity": single[1],
        "line_count": len(request.lines),
        "idempotency_key": request.idempotency_key,
        "request_fingerprint": request.fingerprint,
        "from_cart": request.from_cart,
    }


def _recorded(row: Any, request: NewSale) -> Sale:
    lines = [
        SaleLine(sale_id=row.id, product_id=product_id, position=position, quantity=quantity)
        for position, (product_id, quantity) in enumerate(request.lines)
    ]
    return _sale_from(row, lines)


def existing_sale(session: Session, customer_id: int, request: NewSale) -> Sale:
    """The sale this customer recorded earlier under ``request``'s idempotency key (which
    just conflicted); 422 ``idempotency_key_reused`` if it was a different request."""
    assert request.idempotency_key is not None  # only a key can conflict
    found = {"customer_id": customer_id, "idempotency_key": request.idempotency_key}
    existing = session.connection().execute(_SALE_FOR_KEY, found).one()
    sale = _sale_from(existing, load_lines(session, existing.id))
    session.rollback()
    return _check_same_request(sale, request)


@dataclass(frozen=True)
class Recording:
    """One order of a batch to record: who placed it, what, and the id it is to get."""

    principal: Principal
    request: NewSale
    sale_id: uuid.UUID


class NothingRecorded(Exception):
    """The database could not be reached before a batch was sent: none of it was recorded."""


def record_sales(session: Session, orders: Sequence[Recording]) -> list[Sale | None]:
    """Step 1: commit orders and their lines as ``pending``, in one statement and one commit
    (a purchase alone is a batch of one).

    Each order gets its new sale, leased for :data:`LEASE_S` seconds to the request
    that placed it (recovery leaves it alone until it has been driven once or the
    lease ran out, so it can never take it before its driver), or ``None`` when its
    customer already used its idempotency key (earlier, or in this same batch): that
    request looks the sale up with :func:`existing_sale`. Two requests racing with one
    key meet on the unique index: the second waits for the first to commit. Raises
    :class:`NothingRecorded` if no connection could be had.
    """
    try:
        connection = session.connection()
    except DATABASE_DOWN_ERRORS as exc:
        raise NothingRecorded() from exc
    rows = connection.execute(
        _RECORD_SALES,
        {
            "lease_s": LEASE_S,
            "sales": json.dumps([_new_sale(order) for order in orders]),
        },
    ).all()
    session.commit()
    by_id = {row.id: row for row in rows}
    return [
        _recorded(row, order.request) if (row := by_id.get(order.sale_id)) is not None else None
        for order in orders
    ]


def _new_sale(order: Recording) -> dict[str, Any]:
    """One row of :data:`_RECORD_SALES`."""
    request = order.request
    return {
        **_sale_columns(order.principal, request),
        "id": str(order.sale_id),
        "lines": [
            {"product_id": product_id, "position": position, "quantity": quantity}
            for position, (product_id, quantity) in enumerate(request.lines)
        ],
    }


def save_leased(session: Session, runs: Sequence[SagaRun]) -> list[bool]:
    """Write many drives' outcomes at once (one statement, one commit); which were written.

    A drive is written only if its sale is still ``pending`` under the lease its
    request got when recording it (:func:`drive_leased`); otherwise someone else
    took the sale after the lease ran out and their outcome stands.
    """
    connection = session.connection()
    written = set(
        connection.execute(
            _SAVE_LEASED, {"runs": json.dumps([run.outcome() for run in runs], default=str)}
        ).scalars()
    )
    saved = [run.sale.id in written for run in runs]
    for run, ok in zip(runs, saved, strict=True):
        if ok:
            run.clear_cart(session)
    session.commit()
    for run, ok in zip(runs, saved, strict=True):
        if ok:
            run.count_settled()
    return saved


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


def _check_same_request(sale: Sale, request: NewSale) -> Sale:
    if sale.request_fingerprint != request.fingerprint:
        raise ProblemError(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was already used for a different purchase.",
            sale_id=str(sale.id),
        )
    return sale


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

    The sale comes back detached with its lines (``lines`` when the caller
    has them already): :func:`drive` changes it in memory and writes it back
    with one ``UPDATE`` (cheaper than the ORM's unit of work).
    """
    statement = _LOCK_LEASED_SALE if leased else _LOCK_SALE
    row = session.connection().execute(statement, {"sale_id": sale_id, "status": status}).first()
    if row is None:
        return None
    return _sale_from(row, lines if lines is not None else load_lines(session, sale_id))


def run_drive(session: Session, sale: Sale, steps: Callable[[SagaRun], None]) -> Sale:
    """Run ``steps`` on a sale locked by :func:`lock_sale` and commit what they did.

    Raises :class:`SagaIncomplete` (after committing the attempt) when the
    outcome cannot be decided now; the sale then keeps its status.
    """
    run = SagaRun(sale)
    sale.attempts += 1
    sale.updated_at = _now()
    try:
        steps(run)
    except SagaIncomplete:
        run.save(session)
        raise
    run.save(session)
    return sale


def drive(session: Session, clients: SaleClients, sale: Sale) -> Sale:
    """Run (or resume) the purchase saga of a pending sale locked by :func:`lock_sale`."""
    return run_drive(session, sale, lambda run: _run_steps(run, clients))


def unknown_answer(run: SagaRun, step: str, answer: ServiceResponse) -> SagaIncomplete:
    """Log an answer the saga cannot interpret; the sale keeps its status and is retried."""
    run.log(step, "unexpected", status=answer.status, code=answer.code)
    log.error("sale %s: unexpected %s answer %s %s", run.sale.id, step, answer.status, answer.code)
    return SagaIncomplete(
        run.sale.id,
        f"The {step} step got an unexpected answer; will retry.",
        sale_status=run.sale.status,
    )


def call_step(run: SagaRun, step: str, call: Callable[[], ServiceResponse]) -> ServiceResponse:
    """Make one remote step's call; a dependency that cannot be reached leaves the sale as is."""
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
    _maybe_crash(step)
    return answer


def _refusal_detail(answer: ServiceResponse) -> dict[str, Any] | None:
    """What a refused reservation named: the short products, or the unknown ones."""
    body = answer.body if isinstance(answer.body, dict) else {}
    for name in ("products", "product_ids"):
        if isinstance(body.get(name), list):
            return {name: body[name]}
    return None


def _run_steps(run: SagaRun, clients: SaleClients) -> None:
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


def drive_leased(
    session: Session, clients: SaleClients, sale: Sale, save: Callable[[SagaRun], bool]
) -> Sale:
    """Run the purchase saga of a sale this request just recorded in a batch, owning it by
    its lease (``lease_until``) instead of its row lock; ``save`` writes the outcome
    (in a batch, :func:`save_leased`) and says whether it was written.

    Nobody else drives a leased sale (recovery and replays skip it), so nothing is
    locked while the remote steps run. Should the lease run out first and someone
    take the sale, their outcome stands: the sale as they left it is returned (409
    ``sale_in_progress`` while they still drive it). Raises :class:`SagaIncomplete`
    (after saving the attempt) when the outcome cannot be decided now.
    """
    run = SagaRun(sale)
    sale.attempts += 1
    sale.updated_at = _now()
    try:
        _run_steps(run, clients)
    except SagaIncomplete:
        save(run)
        raise
    if save(run):
        return sale
    current = session.get(Sale, sale.id, populate_existing=True)
    assert current is not None
    log.warning("sale %s: its lease ran out and %s was kept", sale.id, current.status)
    if current.status == PENDING:
        raise _in_progress(sale.id)
    return current


def _in_progress(sale_id: uuid.UUID) -> Conflict:
    return Conflict(
        "sale_in_progress",
        "This purchase is being processed right now; retry shortly.",
        sale_id=str(sale_id),
    )


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
    while it is driven (:func:`drive_leased`).
    """
    clients.check_available()
    if batcher is None or not batcher.enabled:
        return _purchase(session, clients, principal, request)
    batched = batcher.for_sale()
    try:
        return _purchase(session, batched, principal, request, batched=batched)
    finally:
        batched.close()


def _record(
    session: Session,
    principal: Principal,
    request: NewSale,
    sale_id: uuid.UUID,
    batched: BatchedSale | None,
) -> tuple[Sale, bool]:
    """Step 1, alone or in a batch: ``(sale, created)``; 503 if the database fails.

    With a client idempotency key this customer already used, the existing sale is
    returned (``created`` false); a different request under the same key is 422
    ``idempotency_key_reused``.
    """
    assert principal.customer_id is not None
    order = Recording(principal, request, sale_id)
    try:
        if batched is None:
            [sale] = record_sales(session, [order])
        else:
            sale = batched.record(order)
            # The batch committed the order on its own connection: end the caller's
            # transaction too, which may hold the cart's checkout lock (sales_service.cart).
            session.commit()
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


def _purchase(
    session: Session,
    clients: SaleClients,
    principal: Principal,
    request: NewSale,
    *,
    batched: BatchedSale | None = None,
) -> tuple[Sale, bool]:
    sale, created = _record(session, principal, request, uuid.uuid4(), batched)
    if created:
        _maybe_crash("record")
    if not created and sale.status != PENDING:
        return sale, True
    with database_kept(sale.id, PENDING):
        if created and batched is not None:
            return drive_leased(session, clients, sale, batched.save), False
        locked = lock_sale(session, sale.id, lines=sale.lines, leased=created)
        if locked is None:
            session.rollback()
            current = session.get(Sale, sale.id, populate_existing=True)
            assert current is not None
            if current.status == PENDING:
                raise _in_progress(sale.id)
            return current, not created
        return drive(session, clients, locked), not created
