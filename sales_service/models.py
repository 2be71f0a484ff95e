"""Tables of the ``sales`` schema: orders (each one a saga), their lines, the saga log, carts.

An order ("sale") has one or more lines. Its status moves
``pending → completed | failed``, then ``completed → shipped → delivered`` or
``completed → cancelling → cancelled`` (see :mod:`sales_service.saga` and
:mod:`sales_service.lifecycle`); every change is appended to its ``history``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shopkit.db import make_metadata
from shopkit.events.outbox import outbox_table
from shopkit.fields import SALE_TOTAL_DIGITS
from shopkit.idempotency import IdempotencyKeyMixin

SCHEMA = "sales"

PENDING, COMPLETED, FAILED = "pending", "completed", "failed"
SHIPPED, DELIVERED = "shipped", "delivered"
CANCELLING, CANCELLED = "cancelling", "cancelled"
STATUSES = (PENDING, COMPLETED, FAILED, SHIPPED, DELIVERED, CANCELLING, CANCELLED)
#: Orders that were paid and not given back: they count as purchases (reviews) and sales.
PAID_STATUSES = (COMPLETED, SHIPPED, DELIVERED)
#: Orders whose saga is still running: recovery drives them when they grow stale.
UNSETTLED_STATUSES = (PENDING, CANCELLING)
#: An order has 1 to this many lines, each for a distinct product.
MAX_LINES = 50
#: A cart holds at most this many units of one product.
MAX_CART_QUANTITY = 100


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base of the sales schema."""

    metadata = make_metadata(SCHEMA)
    # Every model maps one table (SQLAlchemy types it as any FromClause).
    __table__: ClassVar[Table]


class Sale(Base):
    """One order and the state of its sagas; ``id`` is also the saga id.

    ``product_id``, ``product_name``, ``quantity`` and ``unit_price`` repeat the
    line of a one-line order (the API's original shape) and are null for an
    order of several lines; :attr:`lines` always holds every line.
    """

    __tablename__ = "sales"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(_in("status", STATUSES), name="status_known"),
        CheckConstraint(
            "status IN ('pending', 'failed') OR total IS NOT NULL", name="paid_has_total"
        ),
        CheckConstraint(f"line_count BETWEEN 1 AND {MAX_LINES}", name="line_count_range"),
        CheckConstraint("(status = 'failed') = (failure_code IS NOT NULL)", name="failed_has_code"),
        # A client's Idempotency-Key names at most one sale of that customer.
        Index(
            "uq_sales_customer_key",
            "customer_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        Index("ix_sales_customer_id_created_at", "customer_id", "created_at"),
        Index(
            "ix_sales_unsettled_updated_at",
            "updated_at",
            postgresql_where=text(_in("status", UNSETTLED_STATUSES)),
        ),
        Index("ix_sales_status_created_at", "status", "created_at"),
        Index("ix_sales_created_at", "created_at"),
        Index("ix_sales_username_created_at", "username", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigInteger)
    username: Mapped[str] = mapped_column(String(32))
    product_id: Mapped[int | None] = mapped_column(BigInteger)
    product_name: Mapped[str | None] = mapped_column(String(200))
    quantity: Mapped[int | None] = mapped_column(Integer)
    unit_price: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    line_count: Mapped[int] = mapped_column(Integer, server_default="1")
    # Up to 50 lines of 1,000 units at the largest price: wider than a price or a balance.
    total: Mapped[Decimal | None] = mapped_column(Numeric(SALE_TOTAL_DIGITS + 2, 2))
    status: Mapped[str] = mapped_column(String(16), server_default=PENDING)
    failure_code: Mapped[str | None] = mapped_column(String(64))
    #: What a refusal named (the short or unknown products), for the failed order's answer.
    failure_detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    #: Placed from the cart: completing the order takes its lines out of the cart.
    from_cart: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    #: Every status the order took, oldest first: ``[{"status": ..., "at": ...}]``.
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    carrier: Mapped[str | None] = mapped_column(String(100))
    tracking_number: Mapped[str | None] = mapped_column(String(100))
    #: The ``Idempotency-Key`` of the cancellation, so that a retry of it replays.
    cancel_key: Mapped[str | None] = mapped_column(String(200))
    #: Set when an order is recorded or starts cancelling, cleared by its first drive:
    #: until then recovery leaves it to the request that is about to drive it.
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    shipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    lines: Mapped[list[SaleLine]] = relationship(
        order_by="SaleLine.position", cascade="all, delete-orphan"
    )
    steps: Mapped[list[SagaStep]] = relationship(
        back_populates="sale", order_by="SagaStep.id", cascade="all, delete-orphan"
    )


class SaleLine(Base):
    """One line of an order: a product, how many, and the unit price reserved for it."""

    __tablename__ = "sale_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        Index("ix_sale_lines_product_id", "product_id"),
    )

    sale_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(Sale.id, ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    #: The line's place in the order as the customer gave it (0-based).
    position: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer)
    product_name: Mapped[str | None] = mapped_column(String(200))
    unit_price: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))

    @property
    def line_total(self) -> Decimal | None:
        """``unit_price * quantity``, once the price is known."""
        if self.unit_price is None:
            return None
        return (self.unit_price * self.quantity).quantize(Decimal("0.01"))


class CartItem(Base):
    """One line of a customer's cart (one cart per customer)."""

    __tablename__ = "cart_items"
    __table_args__ = (
        CheckConstraint(f"quantity BETWEEN 1 AND {MAX_CART_QUANTITY}", name="quantity_range"),
    )

    customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    product_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SagaStep(Base):
    """One step a saga took (reserve, debit, release, refund, return, ...) and what came back."""

    __tablename__ = "saga_steps"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    sale_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(Sale.id, ondelete="CASCADE"), index=True)
    step: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    sale: Mapped[Sale] = relationship(back_populates="steps")


class IdempotencyKey(IdempotencyKeyMixin, Base):
    """Idempotency keys of state-changing calls to the sales service (reserved for admin use)."""


#: The sales outbox: each order event, written in the transaction of the change it tells
#: (:mod:`shopkit.events.outbox`), published by the relay (:mod:`sales_service.events`).
OUTBOX = outbox_table(Base.metadata)
