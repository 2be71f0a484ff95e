"""The customer's cart: one per customer, kept in the sales schema, priced from inventory.

The cart stores only product ids and quantities. Names, current prices and
availability are read from inventory in one call (``GET /products?ids=``)
each time the cart is shown, so the cart never shows a stale price; the
price an order pays is the one inventory reserves at checkout.

Edits of one cart are serialised by a transaction-scoped advisory lock, so
two concurrent additions cannot take it past :data:`~sales_service.models.MAX_LINES`
lines. Checkout reads the cart in one statement: the order is the cart as it
stood at that moment, whatever edits come after.

A cart has at most one checkout pending at a time: checkouts of one cart are
serialised by a second advisory lock, held until the new order is recorded, and
a checkout that finds the cart's earlier order still ``pending`` answers with
that order instead of placing another (docs/architecture.rst, "Orders").
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from sales_service.catalog import unexpected_answer
from sales_service.clients import InventoryClient
from sales_service.models import MAX_LINES, PENDING, CartItem, Sale
from shopkit.db import advisory_xact_lock, transaction
from shopkit.errors import Conflict, NotFound
from shopkit.fields import TWO_PLACES


def _items(session: Session, customer_id: int) -> list[CartItem]:
    return list(
        session.scalars(
            select(CartItem)
            .where(CartItem.customer_id == customer_id)
            .order_by(CartItem.created_at, CartItem.product_id)
        )
    )


def view(session: Session, inventory: InventoryClient, customer_id: int) -> dict[str, Any]:
    """The cart with current names, prices and availability, and the total of what is priced.

    A product that was archived since it was added stays in the cart as
    ``available: false`` with no price, so the customer sees why checkout
    would refuse it.
    """
    items = _items(session, customer_id)
    products: dict[int, dict[str, Any]] = {}
    if items:
        answer = inventory.products_by_id([item.product_id for item in items])
        if answer.status != 200:
            raise unexpected_answer()
        products = {int(p["id"]): p for p in answer.body.get("items", [])}
    lines = []
    total = Decimal("0.00")
    for item in items:
        product = products.get(item.product_id)
        price = Decimal(str(product["price"])) if product else None
        line_total = (price * item.quantity).quantize(TWO_PLACES) if price is not None else None
        if line_total is not None:
            total += line_total
        lines.append(
            {
                "product_id": item.product_id,
                "product_name": product["name"] if product else None,
                "quantity": item.quantity,
                "unit_price": price,
                "line_total": line_total,
                "available": product is not None and int(product["stock"]) >= item.quantity,
            }
        )
    return {"items": lines, "total": total}


def set_item(
    session: Session, inventory: InventoryClient, customer_id: int, product_id: int, quantity: int
) -> None:
    """Put ``quantity`` units of a product in the cart (replacing what was there).

    404 for an unknown or archived product; 409 ``cart_full`` when the cart
    already holds :data:`MAX_LINES` other products.
    """
    answer = inventory.product(product_id)
    if answer.status == 404:
        raise NotFound(f"No product {product_id}.")
    if answer.status != 200:
        raise unexpected_answer()
    with transaction(session):
        advisory_xact_lock(session, "cart", str(customer_id))
        others = session.scalar(
            select(func.count()).where(
                CartItem.customer_id == customer_id, CartItem.product_id != product_id
            )
        )
        if (others or 0) >= MAX_LINES:
            raise Conflict(
                "cart_full",
                f"A cart holds at most {MAX_LINES} products; remove one first.",
                max_lines=MAX_LINES,
            )
        now = datetime.now(UTC)
        upsert = pg_insert(CartItem).values(
            customer_id=customer_id, product_id=product_id, quantity=quantity, updated_at=now
        )
        session.execute(
            upsert.on_conflict_do_update(
                index_elements=[CartItem.customer_id, CartItem.product_id],
                set_={"quantity": upsert.excluded.quantity, "updated_at": now},
            )
        )


def remove_item(session: Session, customer_id: int, product_id: int) -> None:
    """Take a product out of the cart (nothing happens if it is not there)."""
    with transaction(session):
        advisory_xact_lock(session, "cart", str(customer_id))
        session.execute(
            delete(CartItem).where(
                CartItem.customer_id == customer_id, CartItem.product_id == product_id
            )
        )


def clear(session: Session, customer_id: int) -> None:
    """Empty the cart."""
    with transaction(session):
        advisory_xact_lock(session, "cart", str(customer_id))
        session.execute(delete(CartItem).where(CartItem.customer_id == customer_id))


def lock_checkout(session: Session, customer_id: int) -> None:
    """Serialise the customer's checkouts until the caller's transaction ends (the saga's
    recording of the new order commits it, so the next checkout sees that order)."""
    advisory_xact_lock(session, "checkout", str(customer_id))


def pending_checkout(session: Session, customer_id: int) -> Sale | None:
    """The customer's newest order placed from the cart that is still ``pending``, if any."""
    return session.scalars(
        select(Sale)
        .where(
            Sale.customer_id == customer_id,
            Sale.from_cart.is_(True),
            Sale.status == PENDING,
        )
        .order_by(Sale.created_at.desc())
        .limit(1)
    ).first()


def checkout_lines(session: Session, customer_id: int) -> tuple[tuple[int, int], ...]:
    """The cart as order lines ``(product_id, quantity)``; 409 ``cart_empty`` if empty.

    The caller's transaction stays open (it holds :func:`lock_checkout`'s lock).
    """
    lines = tuple((item.product_id, item.quantity) for item in _items(session, customer_id))
    if not lines:
        raise Conflict("cart_empty", "The cart is empty: add products before checking out.")
    return lines
