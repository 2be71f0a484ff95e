"""Stock changes: admin restock and deduct, and reservations for sales.

Stock moves only by conditional updates in the caller's transaction
(``... SET stock = stock - :q WHERE stock >= :q``, ``... WHERE stock <= MAX - :q``),
backed by CHECK constraints, so concurrent requests can never oversell or
overflow it. A reservation takes stock once per sale (the sale id is its
primary key); releasing it puts the stock back exactly once, however often
it is called, because the ``reserved -> released`` transition is itself a
conditional update.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Insert, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inventory_service.catalogue import get_product
from inventory_service.models import MAX_STOCK, Product, Reservation
from shopkit.db import constraint_name
from shopkit.errors import Conflict, NotFound, ProblemError
from shopkit.pagination import paginate


def _insufficient(available: int, requested: int) -> Conflict:
    return Conflict(
        "insufficient_stock",
        f"Only {available} in stock, {requested} requested.",
        available=available,
        requested=requested,
    )


def _stock_limit(product: Product, quantity: int) -> Conflict:
    return Conflict(
        "stock_limit",
        f"Adding {quantity} would take the stock over its limit of {MAX_STOCK}.",
        stock=product.stock,
        max_stock=MAX_STOCK,
    )


def _adjust(session: Session, product_id: int, delta: int) -> Product:
    """Move a product's stock by ``delta`` with one conditional update (archived ones too).

    404 for an unknown product; past the limits, 409 ``stock_limit`` (adding)
    or ``insufficient_stock`` (removing), and nothing changes.
    """
    within_limits = Product.stock <= MAX_STOCK - delta if delta > 0 else Product.stock >= -delta
    changed = session.scalars(
        update(Product)
        .where(Product.id == product_id, within_limits)
        .values(stock=Product.stock + delta)
        .returning(Product)
        .execution_options(populate_existing=True)
    ).first()
    if changed is not None:
        return changed
    product = get_product(session, product_id, include_archived=True)
    raise _stock_limit(product, delta) if delta > 0 else _insufficient(product.stock, -delta)


def restock(session: Session, product_id: int, quantity: int) -> Product:
    """Add ``quantity`` to the stock; 409 ``stock_limit`` past :data:`MAX_STOCK`."""
    return _adjust(session, product_id, quantity)


def deduct(session: Session, product_id: int, quantity: int) -> Product:
    """Remove ``quantity`` from the stock (an admin correction); 409 ``insufficient_stock``."""
    return _adjust(session, product_id, -quantity)


_products = Product.__table__
_reservations = Reservation.__table__


def _reserve_statement() -> Insert:
    """``reserve``'s one statement (built once; parameters bound by name)."""
    quantity = bindparam("quantity", type_=_reservations.c.quantity.type)
    product_id = bindparam("product_id", type_=_reservations.c.product_id.type)
    taken = (
        update(_products)
        .where(
            _products.c.id == product_id,
            _products.c.stock >= quantity,
            _products.c.archived.is_(False),
        )
        .values(stock=_products.c.stock - quantity)
        .returning(_products.c.price, _products.c.name)
        .cte("taken")
    )
    return (
        insert(_reservations)
        .add_cte(taken)
        .from_select(
            ["sale_id", "product_id", "quantity", "unit_price", "name", "reserved_by"],
            select(
                bindparam("sale_id", type_=_reservations.c.sale_id.type),
                product_id,
                quantity,
                taken.c.price,
                taken.c.name,
                bindparam("actor", type_=_reservations.c.reserved_by.type),
            ),
        )
        .returning(*_reservations.c)
    )


_RESERVE = _reserve_statement()


def reserve(
    session: Session, sale_id: uuid.UUID, product_id: int, quantity: int, actor: str
) -> Reservation:
    """Take ``quantity`` of a product for sale ``sale_id``, with its current price and name.

    One statement does it: a conditional ``UPDATE`` of the stock, and the
    reservation written from the price and name it returned. When it writes
    nothing, the refusal says why: 409 ``already_reserved`` when this sale
    already holds a reservation (even under another idempotency key), 404
    ``not_found`` for an unknown or archived product, 409
    ``insufficient_stock``. A reservation racing another of the same sale is
    refused by the primary key.
    """
    parameters = {
        "sale_id": sale_id,
        "product_id": product_id,
        "quantity": quantity,
        "actor": actor,
    }
    try:
        row = session.connection().execute(_RESERVE, parameters).first()
    except IntegrityError as exc:
        if constraint_name(exc) == f"pk_{_reservations.name}":
            raise _already_reserved(sale_id) from None
        raise
    if row is not None:
        return Reservation(**row._mapping)
    if session.get(Reservation, sale_id) is not None:
        raise _already_reserved(sale_id)
    product = get_product(session, product_id)  # 404 if unknown or archived
    raise _insufficient(product.stock, quantity)


def _already_reserved(sale_id: uuid.UUID) -> Conflict:
    return Conflict("already_reserved", f"Sale {sale_id} already has a reservation.")


def get_reservation(session: Session, sale_id: uuid.UUID) -> Reservation:
    """The reservation of sale ``sale_id``, or 404."""
    reservation = session.get(Reservation, sale_id)
    if reservation is None:
        raise NotFound(f"Sale {sale_id} has no reservation.")
    return reservation


def release(session: Session, sale_id: uuid.UUID) -> Reservation:
    """Put a reservation's stock back, exactly once; releasing again changes nothing.

    404 when the sale has no reservation. In the (absurd) case that the
    product has since been restocked to its limit, 503 ``stock_limit``: a
    compensation cannot be refused for good, so the answer is one that is
    not stored under the caller's idempotency key, and the caller retries
    until the stock has room again.
    """
    released = session.execute(
        update(Reservation)
        .where(Reservation.sale_id == sale_id, Reservation.status == "reserved")
        .values(status="released", released_at=datetime.now(UTC))
        .returning(Reservation.product_id, Reservation.quantity)
    ).first()
    if released is not None:
        restored = session.execute(
            update(Product)
            .where(
                Product.id == released.product_id,
                Product.stock <= MAX_STOCK - released.quantity,
            )
            .values(stock=Product.stock + released.quantity)
            .returning(Product.id)
        ).first()
        if restored is None:
            product = get_product(session, released.product_id, include_archived=True)
            limit = _stock_limit(product, released.quantity)
            raise ProblemError(
                503, limit.code, limit.detail, headers={"Retry-After": "30"}, **limit.extra
            )
    return get_reservation(session, sale_id)


def list_reservations(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """A page of reservations, newest first, optionally by status and product."""
    statement = select(Reservation).order_by(
        Reservation.created_at.desc(), Reservation.sale_id.desc()
    )
    if args.get("status") is not None:
        statement = statement.where(Reservation.status == args["status"])
    if args.get("product_id") is not None:
        statement = statement.where(Reservation.product_id == args["product_id"])
    return paginate(session, statement, args["page"], args["page_size"])
