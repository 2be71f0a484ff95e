"""Read-side operations: one order, purchase histories, the admin list and purchase checks."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from sales_service.models import PAID_STATUSES, Sale, SaleLine
from shopkit.auth import Principal
from shopkit.errors import NotFound
from shopkit.pagination import paginate

#: Lists dump every order's lines: load them in one query per page.
_WITH_LINES = selectinload(Sale.lines)


def get_sale(session: Session, sale_id: uuid.UUID, principal: Principal) -> Sale:
    """A sale with its steps, for its buyer or an admin (404 for anyone else)."""
    sale = session.execute(
        select(Sale)
        .where(Sale.id == sale_id)
        .options(selectinload(Sale.steps), selectinload(Sale.lines))
    ).scalar_one_or_none()
    if sale is None or not (principal.is_admin or sale.customer_id == principal.customer_id):
        raise NotFound(f"No sale {sale_id}.")
    return sale


def history(session: Session, username: str, args: dict[str, Any]) -> dict[str, Any]:
    """A customer's sales, newest first, filtered by ``status`` and ``product``."""
    return list_sales(session, {**args, "customer": username})


def list_sales(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """All sales (admin), filtered by ``status``, ``customer`` (username) and ``product``."""
    statement = select(Sale).options(_WITH_LINES)
    if args.get("status"):
        statement = statement.where(Sale.status == args["status"])
    if args.get("customer"):
        statement = statement.where(Sale.username == args["customer"].lower())
    if args.get("product"):
        statement = statement.where(
            Sale.id.in_(select(SaleLine.sale_id).where(SaleLine.product_id == args["product"]))
        )
    statement = statement.order_by(Sale.created_at.desc(), Sale.id)
    return paginate(session, statement, args["page"], args["page_size"])


def purchases(session: Session, customer_id: int, product_id: int) -> dict[str, Any]:
    """Whether ``customer_id`` has a paid order (completed, shipped, delivered) of ``product_id``.

    A failed or cancelled order does not count.
    """
    count, last = session.execute(
        select(func.count(), func.max(Sale.completed_at))
        .select_from(Sale)
        .join(SaleLine, SaleLine.sale_id == Sale.id)
        .where(
            Sale.customer_id == customer_id,
            SaleLine.product_id == product_id,
            Sale.status.in_(PAID_STATUSES),
        )
    ).one()
    return {
        "customer_id": customer_id,
        "product_id": product_id,
        "purchased": count > 0,
        "completed_sales": count,
        "last_purchased_at": last,
    }
