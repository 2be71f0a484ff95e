"""Admin stock changes: restock and deduct (reservations are in :mod:`.reservations`).

Stock moves only by conditional updates in the caller's transaction
(``... SET stock = stock - :q WHERE stock >= :q``, ``... WHERE stock <= MAX - :q``),
backed by CHECK constraints, so concurrent requests can never oversell or
overflow it. Each change writes its ``shop.product.stock_changed.v1`` event in the
same transaction (:mod:`inventory_service.events`).
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from inventory_service import events
from inventory_service.catalogue import get_product
from inventory_service.models import MAX_STOCK, Product
from shopkit.errors import Conflict


def _insufficient(available: int, requested: int) -> Conflict:
    return Conflict(
        "insufficient_stock",
        f"Only {available} in stock, {requested} requested.",
        available=available,
        requested=requested,
    )


def stock_limit(product: Product, quantity: int) -> Conflict:
    """409 ``stock_limit``: adding ``quantity`` would take the stock over :data:`MAX_STOCK`."""
    return Conflict(
        "stock_limit",
        f"Adding {quantity} would take the stock over its limit of {MAX_STOCK}.",
        stock=product.stock,
        max_stock=MAX_STOCK,
    )


def _adjust(session: Session, product_id: int, delta: int) -> Product:
    """Move a product's stock by ``delta`` with one conditional update (archived ones too),
    and write its event.

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
        events.emit(session, [events.stock_changed(changed.id, changed.stock, delta)])
        return changed
    product = get_product(session, product_id, include_archived=True)
    raise stock_limit(product, delta) if delta > 0 else _insufficient(product.stock, -delta)


def restock(session: Session, product_id: int, quantity: int) -> Product:
    """Add ``quantity`` to the stock; 409 ``stock_limit`` past :data:`MAX_STOCK`."""
    return _adjust(session, product_id, quantity)


def deduct(session: Session, product_id: int, quantity: int) -> Product:
    """Remove ``quantity`` from the stock (an admin correction); 409 ``insufficient_stock``."""
    return _adjust(session, product_id, -quantity)
