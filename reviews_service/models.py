"""Tables of the ``reviews`` schema: reviews and their moderation log.

A review belongs to one customer and one product (at most one review per
customer per product). ``customer_id``, ``username`` and ``product_id`` refer
to rows of other services and are therefore plain columns, not foreign keys.
Each moderation decision is one row of ``moderation_log``; it is deleted
together with its review (``ON DELETE CASCADE``).
"""

from __future__ import annotations

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
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shopkit.db import make_metadata

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
