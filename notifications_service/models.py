"""Tables of the ``notifications`` schema: each customer's notifications and the inbox.

A notification is made from one event (``event_id`` is unique), for the
customer the event concerns. ``customer_id`` and ``subject`` (the order's id)
refer to other services' rows and are plain columns. An order event also
records one :class:`Mail` in the same transaction; the sender
(:mod:`notifications_service.mailer`) sends it afterwards and marks it sent.
The ``inbox`` records the events the consumer group applied
(:mod:`shopkit.events.consumer`).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, Index, Integer, String, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shopkit.db import make_metadata
from shopkit.events.consumer import inbox_table

SCHEMA = "notifications"
MAX_TITLE_LENGTH = 120
MAX_BODY_LENGTH = 500
MAX_MESSAGE_ID_LENGTH = 128
#: RFC 5321's limit of a mailbox.
MAX_ADDRESS_LENGTH = 320
MAX_ERROR_LENGTH = 500


class Base(DeclarativeBase):
    """Declarative base of the notifications schema."""

    metadata = make_metadata(SCHEMA)


class Notification(Base):
    """One message for one customer, made from one event."""

    __tablename__ = "notifications"
    __table_args__ = (
        # A customer's list, newest first; and their unread ones.
        Index("ix_notifications_customer_newest", "customer_id", "id"),
        Index(
            "ix_notifications_customer_unread",
            "customer_id",
            "id",
            postgresql_where="read_at IS NULL",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    type: Mapped[str] = mapped_column(String(128))
    subject: Mapped[str] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(String(MAX_TITLE_LENGTH))
    body: Mapped[str] = mapped_column(String(MAX_BODY_LENGTH))
    #: When the change happened (the event's time), not when it was noticed.
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Mail(Base):
    """One mail about one order event: recorded with its notification, then sent once.

    ``message_id`` is derived from the event id alone, so a mail sent again after a
    crash between sending and marking it sent carries the same ``Message-ID`` and the
    receiving side can drop the duplicate.
    """

    __tablename__ = "mails"
    __table_args__ = (
        # The sender's queue: the unsent mails that are due.
        Index("ix_mails_unsent", "next_attempt_at", postgresql_where="sent_at IS NULL"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    message_id: Mapped[str] = mapped_column(String(MAX_MESSAGE_ID_LENGTH), unique=True)
    customer_id: Mapped[int] = mapped_column(BigInteger)
    recipient: Mapped[str] = mapped_column(String(MAX_ADDRESS_LENGTH))
    subject: Mapped[str] = mapped_column(String(MAX_TITLE_LENGTH))
    body: Mapped[str] = mapped_column(String(MAX_BODY_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    #: Failed sends so far, the last one's error, and when the next try is due.
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(String(MAX_ERROR_LENGTH))
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


inbox = inbox_table(Base.metadata)
