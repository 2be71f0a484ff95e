"""Tables of the ``customers`` schema: accounts, ledger, keys, refresh tokens, throttling."""

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
    SmallInteger,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shopkit.db import make_metadata
from shopkit.events.outbox import outbox_table
from shopkit.idempotency import IdempotencyKeyMixin

SCHEMA = "customers"

GENDERS = ("female", "male", "non_binary", "prefer_not_to_say")
MARITAL_STATUSES = ("single", "married", "divorced", "widowed")
ROLES = ("customer", "admin")

#: Kinds of wallet ledger entries; every balance change is exactly one of them.
LEDGER_KINDS = ("charge", "deduct", "sale_debit", "refund_credit")

MAX_BALANCE = Decimal("9999999999.99")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base of the customers schema."""

    metadata = make_metadata(SCHEMA)
    # Every model maps one table (SQLAlchemy types it as any FromClause).
    __table__: ClassVar[Table]


class Customer(Base):
    """A customer or admin account with its wallet balance."""

    __tablename__ = "customers"
    __table_args__ = (
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        CheckConstraint("age BETWEEN 18 AND 120", name="age_range"),
        CheckConstraint("username = lower(username)", name="username_lowercase"),
        CheckConstraint(_in("gender", GENDERS), name="gender_known"),
        CheckConstraint(_in("marital_status", MARITAL_STATUSES), name="marital_status_known"),
        CheckConstraint(_in("role", ROLES), name="role_known"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), index=True)  # not unique: contact data
    age: Mapped[int] = mapped_column(SmallInteger)
    address: Mapped[str] = mapped_column(String(500))
    gender: Mapped[str] = mapped_column(String(20))
    marital_status: Mapped[str] = mapped_column(String(20))
    role: Mapped[str] = mapped_column(String(16), server_default="customer")
    balance: Mapped[Decimal] = mapped_column(Numeric(12, 2), server_default="0")
    is_active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    deactivated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LedgerEntry(Base):
    """One change of one wallet's balance; the balance is always the sum of its entries."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
        CheckConstraint(_in("kind", LEDGER_KINDS), name="kind_known"),
        CheckConstraint(
            "(kind IN ('charge', 'refund_credit')) = (amount > 0)", name="sign_matches_kind"
        ),
        CheckConstraint(
            "(kind IN ('sale_debit', 'refund_credit')) = (sale_id IS NOT NULL)",
            name="sale_id_for_sale_kinds",
        ),
        # At most one debit and one refund per sale, whatever the idempotency keys.
        Index(
            "uq_ledger_entries_sale_kind",
            "sale_id",
            "kind",
            unique=True,
            postgresql_where=text("sale_id IS NOT NULL"),
        ),
        Index("ix_ledger_entries_customer_id_id", "customer_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey(Customer.id))
    kind: Mapped[str] = mapped_column(String(20))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    balance_after: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    sale_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    reason: Mapped[str | None] = mapped_column(String(500))
    actor: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SigningKey(Base):
    """An RS256 key pair that signs tokens; the public half is published as a JWK."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_pem: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RefreshToken(Base):
    """An issued refresh token (by id); refreshing rotates it, reuse revokes the family."""

    __tablename__ = "refresh_tokens"

    jti: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    #: The login this token descends from by rotation; logout revokes the whole family.
    family_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey(Customer.id), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ThrottleBucket(Base):
    """Counted attempts of one account or client address, shared by every worker and process.

    ``bucket`` is e.g. ``login:account:ada`` or ``login:address:10.0.0.7``.
    """

    __tablename__ = "throttle_buckets"

    bucket: Mapped[str] = mapped_column(String(200), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)
    window_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyKey(IdempotencyKeyMixin, Base):
    """Idempotency keys of state-changing calls to the customers service."""


#: The customers outbox: each wallet event, written in the transaction of the ledger entry
#: it tells (:mod:`customers_service.events`).
OUTBOX = outbox_table(Base.metadata)
