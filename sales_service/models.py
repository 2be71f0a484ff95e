"""Tables of the ``sales`` schema: sales (each one a saga) and the log of their steps."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shopkit.db import make_metadata
from shopkit.fields import SALE_TOTAL_DIGITS
from shopkit.idempotency import IdempotencyKeyMixin

SCHEMA = "sales"

PENDING, COMPLETED, FAILED = "pending", "completed", "failed"
STATUSES = (PENDING, COMPLETED, FAILED)


class Base(DeclarativeBase):
    """Declarative base of the sales schema."""

    metadata = make_metadata(SCHEMA)


class Sale(Base):
    """One purchase and the state of its saga; ``id`` is also the saga id."""

    __tablename__ = "sales"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("status IN ('pending', 'completed', 'failed')", name="status_known"),
        CheckConstraint(
            "status <> 'completed' OR (total IS NOT NULL AND unit_price IS NOT NULL)",
            name="completed_has_price",
        ),
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
        Index("ix_sales_product_id_customer_id", "product_id", "customer_id"),
        Index(
            "ix_sales_pending_updated_at",
            "updated_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_sales_created_at", "created_at"),
        Index("ix_sales_username_created_at", "username", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigInteger)
    username: Mapped[str] = mapped_column(String(32))
    product_id: Mapped[int] = mapped_column(BigInteger)
    product_name: Mapped[str | None] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    # Up to 1,000 units at the largest price: wider than a price or a balance.
    total: Mapped[Decimal | None] = mapped_column(Numeric(SALE_TOTAL_DIGITS + 2, 2))
    status: Mapped[str] = mapped_column(String(16), server_default=PENDING)
    failure_code: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    steps: Mapped[list[SagaStep]] = relationship(
        back_populates="sale", order_by="SagaStep.id", cascade="all, delete-orphan"
    )


class SagaStep(Base):
    """One step a saga took (reserve, debit, release, complete, fail) and what came back."""

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
