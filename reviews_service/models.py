"""Tables of the ``reviews`` schema: reviews, their moderation log, events and purchases.

A review belongs to one customer and one product (at most one review per
customer per product). ``customer_id``, ``username`` and ``product_id`` refer
to rows of other services and are therefore plain columns, not foreign keys.
Each moderation decision is one row of ``moderation_log``; it is deleted
together with its review (``ON DELETE CASCADE``).

Events: the ``outbox`` holds the review events written in the transaction of
each change (:mod:`reviews_service.events`); the ``inbox`` records the order
events the ``reviews`` consumer group applied. What those order events tell
is kept in ``purchases`` (one row per order: its customer and latest status)
and ``purchase_lines`` (the products it holds); the *verified purchases* are
the lines of the orders whose status is ``paid`` (:mod:`reviews_service.purchases`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shopkit.db import make_metadata
from shopkit.events.consumer import inbox_table
from shopkit.events.outbox import outbox_table

SCHEMA = "reviews"

#: Every status a review can be in; only ``approved`` reviews are public.
STATUSES = ("pending", "approved", "flagged", "rejected")
STATUS_PENDING = "pending"
STATUS_APPROVED = "approved"

#: Moderation actions and the status each one leads to.
ACTIONS = {"approve": "approved", "flag": "flagged", "reject": "rejected"}

MIN_RATING = 1
MAX_RATING = 5
MAX_COMMENT_LENGTH = 2000
MAX_NOTE_LENGTH = 1000

#: What reviews knows of an order from its events: ``placed`` (not settled yet), ``paid``
#: (completed, shipped or delivered: a verified purchase), ``failed``, ``cancelled``.
PURCHASE_STATUSES = ("placed", "paid", "failed", "cancelled")
PURCHASE_PLACED = "placed"
PURCHASE_PAID = "paid"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base of the reviews schema."""

    metadata = make_metadata(SCHEMA)
    # Every model maps one table (SQLAlchemy types it as any FromClause).
    __table__: ClassVar[Table]


class Review(Base):
    """One customer's rating and comment of one product they bought."""

    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("customer_id", "product_id"),
        CheckConstraint(f"rating BETWEEN {MIN_RATING} AND {MAX_RATING}", name="rating_range"),
        CheckConstraint(
            f"char_length(comment) BETWEEN 1 AND {MAX_COMMENT_LENGTH}", name="comment_length"
        ),
        CheckConstraint(_in("status", STATUSES), name="status_known"),
        # Approved reviews of a product, newest first (the public listing and summary).
        Index("ix_reviews_product_id_status_created_at", "product_id", "status", "created_at"),
        # The moderation queue: one status, longest waiting first.
        Index("ix_reviews_status_updated_at", "status", "updated_at"),
        Index("ix_reviews_username_created_at", "username", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    product_id: Mapped[int] = mapped_column(BigInteger)
    customer_id: Mapped[int] = mapped_column(BigInteger)
    username: Mapped[str] = mapped_column(String(32))
    rating: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str] = mapped_column(String(MAX_COMMENT_LENGTH))
    status: Mapped[str] = mapped_column(String(16), server_default=STATUS_PENDING)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ModerationEntry(Base):
    """One moderation decision: who did what to which review, why, and the status change."""

    __tablename__ = "moderation_log"
    __table_args__ = (
        CheckConstraint(_in("action", tuple(ACTIONS)), name="action_known"),
        CheckConstraint(_in("from_status", STATUSES), name="from_status_known"),
        CheckConstraint(_in("to_status", STATUSES), name="to_status_known"),
        Index("ix_moderation_log_review_id_id", "review_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey(Review.id, ondelete="CASCADE"))
    moderator: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(String(MAX_NOTE_LENGTH))
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Purchase(Base):
    """One order as its events told it: the customer and the status of its latest event."""

    __tablename__ = "purchases"
    __table_args__ = (CheckConstraint(_in("status", PURCHASE_STATUSES), name="status_known"),)

    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    #: The ``sequence`` of the order event the status comes from: an older one never
    #: overwrites it (events of one order can arrive out of order around failures).
    sequence: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class PurchaseLine(Base):
    """One product of one order (from ``shop.order.placed.v1``), with the order's customer.

    The primary key starts with the customer and the product: the look-up a review
    makes (did this customer buy this product?) and the admin listing's order.
    """

    __tablename__ = "purchase_lines"

    customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    product_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(Purchase.order_id, ondelete="CASCADE"), primary_key=True
    )


#: The reviews outbox: each review event, written in the transaction of the change it tells.
OUTBOX = outbox_table(Base.metadata)
#: The order events the ``reviews`` group applied (:mod:`shopkit.events.consumer`).
INBOX = inbox_table(Base.metadata)
