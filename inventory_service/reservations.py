"""Reservations: the stock of a sale's lines, taken all or none and put back exactly once.

A reservation is a header per sale (its key is the sale id) plus one line per
product, each with the price and name the product had when it was reserved.

Taking stock. One statement (:data:`_RESERVE`) takes every line's stock with
a conditional ``UPDATE ... FROM unnest(ids, quantities)`` and writes the
header and lines from what it returned; the header (and so the lines) is
written only if every line was taken. A one-line reservation is just one
statement of that shape (:data:`_RESERVE_ONE`), on the hot path of every
purchase. With several lines the product rows are
first locked in ascending id order (``SELECT ... ORDER BY id FOR UPDATE``:
PostgreSQL sorts, then locks row by row), so two orders sharing products
always queue in the same order and never deadlock; the refusal is then
decided from the locked rows, naming every unknown or short product, and
nothing is written. Any refusal rolls the caller's transaction back.

Events. Every line taken or put back writes ``shop.product.stock_changed.v1``
in the same transaction (:mod:`inventory_service.events`); the stock it left
comes back from the same statement that moved it. A batch of reservations
collects its sales' events (:class:`BatchEvents`) and writes those of the sales
that took effect with one statement before its commit.

Putting stock back. ``reserved -> released`` (an unpaid sale that failed)
and ``reserved -> returned`` (a paid order cancelled and refunded) are
conditional updates of the header, so however often and however
concurrently they are asked for, the lines' stock goes back once. Whether a
sale was paid or refunded is the customers service's to say: the routes ask
it (:func:`require_unpaid`, :func:`require_refund`) before the transition.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    any_,
    bindparam,
    column,
    exists,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from inventory_service import events
from inventory_service.catalogue import get_product
from inventory_service.clients import PaymentsClient
from inventory_service.models import MAX_STOCK, Product, Reservation, ReservationLine
from inventory_service.stock import stock_limit
from shopkit.db import constraint_name
from shopkit.errors import Conflict, NotFound, ProblemError, ValidationFailed
from shopkit.events.outbox import NewEvent
from shopkit.pagination import paginate

#: Most lines one reservation may hold.
MAX_LINES = 50

#: A line to reserve: ``(product_id, quantity)``.
Line = tuple[int, int]

_products = Product.__table__
_reservations = Reservation.__table__
_lines = ReservationLine.__table__


def _wanted() -> Any:
    """``unnest(:product_ids, :quantities) AS wanted(product_id, quantity)``."""
    return (
        func.unnest(
            bindparam("product_ids", type_=ARRAY(BigInteger)),
            bindparam("quantities", type_=ARRAY(Integer)),
        )
        .table_valued(column("product_id", BigInteger), column("quantity", Integer))
        .render_derived(name="wanted")
    )


def _reserve_statement(*, one_line: bool) -> Select[Any]:
    """:func:`reserve`'s one statement (built once; parameters bound by name).

    ``taken`` moves the stock; ``header`` is written only when every line was
    taken; ``line`` is written from ``taken``'s prices and names. The result
    is one row per line: the header's columns, then the line's, then the
    stock the line left (for its event). The one-line
    form binds plain values (``product_id``, ``quantity``), which PostgreSQL
    plans more cheaply than ``unnest`` and a count: it runs on every purchase.
    """
    if one_line:
        quantity = bindparam("quantity", type_=Integer)
        taken = (
            update(_products)
            .where(
                _products.c.id == bindparam("product_id", type_=BigInteger),
                _products.c.stock >= quantity,
                _products.c.archived.is_(False),
            )
            .values(stock=_products.c.stock - quantity)
            .returning(
                _products.c.id,
                quantity.label("quantity"),
                _products.c.price,
                _products.c.name,
                _products.c.stock,
            )
            .cte("taken")
        )
        every_line_taken: ColumnElement[bool] = (
            true()
        )  # one header per row taken, and there is at most one
    else:
        wanted = _wanted()
        taken = (
            update(_products)
            .where(
                _products.c.id == wanted.c.product_id,
                _products.c.stock >= wanted.c.quantity,
                _products.c.archived.is_(False),
            )
            .values(stock=_products.c.stock - wanted.c.quantity)
            .returning(
                _products.c.id,
                wanted.c.quantity,
                _products.c.price,
                _products.c.name,
                _products.c.stock,
            )
            .cte("taken")
        )
        every_line_taken = select(func.count()).select_from(taken).scalar_subquery() == bindparam(
            "line_count", type_=Integer
        )
    source = select(
        bindparam("sale_id", type_=_reservations.c.sale_id.type),
        bindparam("actor", type_=_reservations.c.reserved_by.type),
    )
    header = (
        insert(_reservations)
        .from_select(
            ["sale_id", "reserved_by"],
            source.select_from(taken) if one_line else source.where(every_line_taken),
        )
        .returning(*_reservations.c)
        .cte("header")
    )
    line = (
        insert(_lines)
        .from_select(
            ["sale_id", "product_id", "quantity", "unit_price", "name"],
            select(
                header.c.sale_id, taken.c.id, taken.c.quantity, taken.c.price, taken.c.name
            ).select_from(header.join(taken, true())),
        )
        .returning(*_lines.c)
        .cte("line")
    )
    return (
        select(
            header,
            line.c.product_id,
            line.c.quantity,
            line.c.unit_price,
            line.c.name,
            taken.c.stock,
        )
        .select_from(
            header.join(line, line.c.sale_id == header.c.sale_id).join(
                taken, taken.c.id == line.c.product_id
            )
        )
        .order_by(line.c.product_id)
    )


_RESERVE_ONE = _reserve_statement(one_line=True)
_RESERVE = _reserve_statement(one_line=False)

#: Locks the named products (``product_ids``) in ascending id order (rows are sorted, then
#: locked); every path that locks several products uses it (ratings too), so none deadlock.
LOCK_PRODUCTS = (
    select(_products.c.id, _products.c.stock, _products.c.archived)
    .where(_products.c.id == any_(bindparam("product_ids", type_=ARRAY(BigInteger))))
    .order_by(_products.c.id)
    .with_for_update()
)


def _restore_statement() -> Any:
    """Puts back each line's quantity where the stock has room; returns the ids restored
    with the stock they now hold."""
    wanted = _wanted()
    return (
        update(_products)
        .where(
            _products.c.id == wanted.c.product_id,
            _products.c.stock <= MAX_STOCK - wanted.c.quantity,
        )
        .values(stock=_products.c.stock + wanted.c.quantity)
        .returning(_products.c.id, _products.c.stock)
    )


_RESTORE = _restore_statement()


def check_lines(lines: Sequence[Line]) -> None:
    """422 unless there are 1 to :data:`MAX_LINES` lines of distinct products."""
    if not 1 <= len(lines) <= MAX_LINES:
        raise ValidationFailed({"items": [f"Give 1 to {MAX_LINES} lines."]})
    if len({product_id for product_id, _ in lines}) != len(lines):
        raise ValidationFailed({"items": ["Each product may appear on one line only."]})


class Reserved(NamedTuple):
    """A reservation just written: its header's columns and its lines (rows with
    ``product_id``, ``quantity``, ``unit_price``, ``name`` and the ``stock`` left), read like a
    :class:`Reservation` (plain tuples: cheaper than ORM objects on every purchase)."""

    sale_id: uuid.UUID
    status: str
    reserved_by: str
    created_at: datetime
    released_at: datetime | None
    returned_at: datetime | None
    lines: Sequence[Any]


def reserve(
    session: Session,
    sale_id: uuid.UUID,
    lines: Sequence[Line],
    actor: str,
    *,
    deferred: list[NewEvent] | None = None,
) -> Reserved:
    """Take every line's stock for sale ``sale_id``, all or none, with current prices and names.

    Each line's ``stock_changed`` event is written in the same transaction, or,
    when ``deferred`` is given (a batch, see :class:`BatchEvents`), added to it
    for the caller to write.

    Refusals (nothing taken once the caller rolls back): 409
    ``already_reserved`` when this sale already holds a reservation (even
    under another idempotency key), 404 ``not_found`` naming every unknown
    or archived product (``product_ids``), 409 ``insufficient_stock`` naming
    every short line (``products``). A reservation racing another of the
    same sale is refused by the header's primary key.
    """
    check_lines(lines)
    if len(lines) > 1:
        locked = {
            row.id: row for row in session.execute(LOCK_PRODUCTS, {"product_ids": _ids(lines)})
        }
        if _unknown(lines, locked) or _short(lines, locked):
            raise _refusal(session, sale_id, lines, locked)
    parameters: dict[str, Any] = {"sale_id": sale_id, "actor": actor}
    if len(lines) == 1:
        statement = _RESERVE_ONE
        parameters.update(product_id=lines[0][0], quantity=lines[0][1])
    else:
        statement = _RESERVE
        parameters.update(
            product_ids=[product_id for product_id, _ in lines],
            quantities=[quantity for _, quantity in lines],
            line_count=len(lines),
        )
    try:
        rows = session.connection().execute(statement, parameters).all()
    except IntegrityError as exc:
        if constraint_name(exc) == f"pk_{_reservations.name}":
            raise _already_reserved(sale_id) from None
        raise
    if not rows:
        raise _refusal(session, sale_id, lines, None)
    header = rows[0][: len(_reservations.c)]
    changes = [events.stock_changed(row.product_id, row.stock, -row.quantity) for row in rows]
    if deferred is None:
        events.emit(session, changes)
    else:
        deferred.extend(changes)
    return Reserved(*header, lines=rows)  # type: ignore[misc]  # header: the other fields


class BatchEvents:
    """The stock events of a batch of reservations, written at once before its commit.

    Each sale's reservation collects its events under its sale id
    (:meth:`for_sale`); once every item ran, :meth:`emit` writes those of the
    sales that took effect (not refused, not replayed, not undone) with one
    statement, in the order the items ran, so each product's events keep the
    order of its stock changes.
    """

    def __init__(self) -> None:
        self._by_sale: dict[uuid.UUID, list[NewEvent]] = {}

    def for_sale(self, sale_id: uuid.UUID) -> list[NewEvent]:
        """A fresh list for sale ``sale_id``'s events (pass it as ``reserve(deferred=...)``)."""
        self._by_sale[sale_id] = []
        return self._by_sale[sale_id]

    def emit(self, session: Session, sale_ids: Sequence[uuid.UUID]) -> None:
        """Write the events of sales ``sale_ids`` (whose reservations took effect)."""
        events.emit(session, [event for sale_id in sale_ids for event in self._by_sale[sale_id]])


def lock_for_batch(session: Session, orders: Sequence[Sequence[Line]]) -> None:
    """Lock every product a batch of reservations names, in ascending id order, up front.

    Each reservation locks its own products in order, but a batch runs many in
    one transaction: two batches of several-line orders would otherwise take
    their rows in different orders and deadlock (PostgreSQL finds it only after
    ``deadlock_timeout``, and the whole batch is retried). When every order has
    one line the batch's own order is already ascending, so nothing is done.
    """
    if all(len(lines) == 1 for lines in orders):
        return
    ids = sorted({product_id for lines in orders for product_id, _ in lines})
    session.execute(LOCK_PRODUCTS, {"product_ids": ids})


def _ids(lines: Sequence[Line]) -> list[int]:
    return sorted(product_id for product_id, _ in lines)


def _unknown(lines: Sequence[Line], found: dict[int, Any]) -> list[int]:
    return sorted(pid for pid, _ in lines if pid not in found or found[pid].archived)


def _short(lines: Sequence[Line], found: dict[int, Any]) -> list[dict[str, int]]:
    return [
        {"product_id": pid, "available": found[pid].stock, "requested": quantity}
        for pid, quantity in sorted(lines)
        if found[pid].stock < quantity
    ]


def _refusal(
    session: Session, sale_id: uuid.UUID, lines: Sequence[Line], found: dict[int, Any] | None
) -> ProblemError:
    """Why nothing was reserved, checked in this order: the sale, the products, their stock."""
    if session.scalar(select(Reservation.sale_id).where(Reservation.sale_id == sale_id)):
        return _already_reserved(sale_id)
    if found is None:
        rows = session.execute(
            select(Product.id, Product.stock, Product.archived).where(Product.id.in_(_ids(lines)))
        )
        found = {row.id: row for row in rows}
    unknown = _unknown(lines, found)
    if unknown:
        names = ", ".join(str(pid) for pid in unknown)
        detail = f"No product with id {names}." if len(unknown) == 1 else f"No products {names}."
        return NotFound(detail, product_ids=unknown)
    # Without a lock (one line) the stock may have been restocked since: then the
    # line is still the one that was short when the stock was taken.
    short = _short(lines, found) or [
        {"product_id": pid, "available": found[pid].stock, "requested": quantity}
        for pid, quantity in lines
    ]
    described = "; ".join(
        f"product {s['product_id']}: {s['available']} in stock, {s['requested']} requested"
        for s in short
    )
    legacy: dict[str, int] = {}
    if len(lines) == 1:  # the one-line answer keeps its former members too
        legacy = {"available": short[0]["available"], "requested": short[0]["requested"]}
    return Conflict(
        "insufficient_stock", f"Not enough stock: {described}.", products=short, **legacy
    )


def _already_reserved(sale_id: uuid.UUID) -> Conflict:
    return Conflict("already_reserved", f"Sale {sale_id} already has a reservation.")


def get_reservation(session: Session, sale_id: uuid.UUID) -> Reservation:
    """The reservation of sale ``sale_id`` as it is now, or 404."""
    reservation = session.execute(
        select(Reservation)
        .where(Reservation.sale_id == sale_id)
        .options(selectinload(Reservation.lines))
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if reservation is None:
        raise NotFound(f"Sale {sale_id} has no reservation.")
    return reservation


def _status(session: Session, sale_id: uuid.UUID) -> str:
    status = session.scalar(select(Reservation.status).where(Reservation.sale_id == sale_id))
    if status is None:
        raise NotFound(f"Sale {sale_id} has no reservation.")
    return status


def require_unpaid(session: Session, sale_id: uuid.UUID, payments: PaymentsClient) -> None:
    """Before a release: 409 ``reservation_sold`` if the customers service holds a debit.

    Asked only while the reservation is ``reserved`` (a repeat asks nothing);
    404 when there is none; 503 ``dependency_unavailable`` when customers
    cannot be reached.
    """
    if _status(session, sale_id) != "reserved":
        return
    if payments.sale_payments(sale_id).debited is not None:
        raise Conflict(
            "reservation_sold",
            f"Sale {sale_id} was paid: only the order's cancellation returns its stock.",
        )


def require_refund(session: Session, sale_id: uuid.UUID, payments: PaymentsClient) -> None:
    """Before a return: 409 ``not_refunded`` until the customers service holds the refund.

    Asked only while the reservation is ``reserved``; 404 when there is none;
    503 ``dependency_unavailable`` when customers cannot be reached.
    """
    if _status(session, sale_id) != "reserved":
        return
    if payments.sale_payments(sale_id).refunded is None:
        raise Conflict(
            "not_refunded",
            f"Sale {sale_id} has not been refunded: its stock returns only after its money.",
        )


def release(session: Session, sale_id: uuid.UUID) -> Reservation:
    """Put an unpaid sale's stock back (``reserved -> released``), exactly once.

    Call :func:`require_unpaid` first. Releasing again changes nothing (200);
    a ``returned`` reservation is 409 ``reservation_returned``; none is 404;
    no room under the stock limit is 503 ``stock_limit`` (see :func:`_put_back`).
    """
    _put_back(session, sale_id, "released")
    reservation = get_reservation(session, sale_id)
    if reservation.status == "returned":
        raise Conflict(
            "reservation_returned", f"The stock of sale {sale_id} was returned by its cancellation."
        )
    return reservation


def return_stock(session: Session, sale_id: uuid.UUID) -> Reservation:
    """Give a cancelled order's stock back (``reserved -> returned``), exactly once.

    Call :func:`require_refund` first. Returning again changes nothing (200);
    a ``released`` reservation is 409 ``reservation_released``; none is 404;
    no room under the stock limit is 503 ``stock_limit`` (see :func:`_put_back`).
    """
    _put_back(session, sale_id, "returned")
    reservation = get_reservation(session, sale_id)
    if reservation.status == "released":
        raise Conflict("reservation_released", f"The stock of sale {sale_id} was already released.")
    return reservation


def _put_back(session: Session, sale_id: uuid.UUID, status: str) -> None:
    """Move a ``reserved`` reservation to ``status`` and put its lines' stock back.

    The conditional update of the header makes it happen once: a concurrent
    call waits for this one and then finds nothing to do. Products are locked
    in ascending id order, as a reservation locks them. In the (absurd) case
    that a product has since been restocked to its limit, 503 ``stock_limit``:
    a compensation cannot be refused for good, so the answer is one that is
    not stored under the caller's idempotency key, and the caller retries
    until the stock has room again.
    """
    moved = session.execute(
        update(Reservation)
        .where(Reservation.sale_id == sale_id, Reservation.status == "reserved")
        .values({"status": status, f"{status}_at": datetime.now(UTC)})
        .returning(Reservation.sale_id)
        .execution_options(synchronize_session=False)
    ).first()
    if moved is None:
        return
    lines = session.execute(
        select(ReservationLine.product_id, ReservationLine.quantity)
        .where(ReservationLine.sale_id == sale_id)
        .order_by(ReservationLine.product_id)
    ).all()
    ids = [line.product_id for line in lines]
    if len(lines) > 1:
        session.execute(LOCK_PRODUCTS, {"product_ids": ids})
    restored = {
        row.id: row.stock
        for row in session.execute(
            _RESTORE, {"product_ids": ids, "quantities": [line.quantity for line in lines]}
        )
    }
    full = [line for line in lines if line.product_id not in restored]
    if full:
        product = get_product(session, full[0].product_id, include_archived=True)
        limit = stock_limit(product, full[0].quantity)
        raise ProblemError(
            503, limit.code, limit.detail, headers={"Retry-After": "30"}, **limit.extra
        )
    events.emit(
        session,
        [
            events.stock_changed(line.product_id, restored[line.product_id], line.quantity)
            for line in lines
        ],
    )


def list_reservations(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """A page of reservations with their lines, newest first, by status and product.

    ``product_id`` matches a reservation with a line of that product.
    """
    statement = (
        select(Reservation)
        .options(selectinload(Reservation.lines))
        .order_by(Reservation.created_at.desc(), Reservation.sale_id.desc())
    )
    if args.get("status") is not None:
        statement = statement.where(Reservation.status == args["status"])
    if args.get("product_id") is not None:
        statement = statement.where(
            exists().where(
                ReservationLine.sale_id == Reservation.sale_id,
                ReservationLine.product_id == args["product_id"],
            )
        )
    return paginate(session, statement, args["page"], args["page_size"])
