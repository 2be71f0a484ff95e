"""Tables of the ``notifications`` schema: notifications, mails, contacts and the inbox.

A notification is made from one event (``event_id`` is unique), for the
customer the event concerns. ``customer_id`` and ``subject`` (the order's id)
refer to other services' rows and are plain columns. An order event also
records one :class:`Mail` in the same transaction; the sender
(:mod:`notifications_service.mailer`) sends it afterwards to the customer's
:class:`Contact` (kept from customer events) and marks it sent, or skipped.
The ``inbox`` records the events the consumer group applied
(:mod:`shopkit.events.consumer`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Identity,
    Index,
    Integer,
    String,
    Table,
    func,
)
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
MAX_REASON_LENGTH = 120
#: Mails the sender still has to send or skip (its queue's partial indexes).
UNSETTLED = "sent_at IS NULL AND skipped_at IS NULL"


class Base(DeclarativeBase):
    """Declarative base of the notifications schema."""

    metadata = make_metadata(SCHEMA)
    # Every model maps one table (SQLAlchemy types it as any FromClause).
    __table__: ClassVar[Table]


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
    receiving side can drop the duplicate. The address is the customer's contact's,
    looked up when the mail is sent (``recipient`` records where it went); a mail whose
    contact is not known yet waits (``contact_waits``), one whose customer is
    deactivated is skipped (``skipped_at``, ``skip_reason``).
    """

    __tablename__ = "mails"
    __table_args__ = (
        # The sender's queue: the unsettled mails, in the order it takes the due ones.
        Index("ix_mails_unsent", "next_attempt_at", "id", postgresql_where=UNSETTLED),
        # A customer's unsettled mails, woken when their contact arrives or changes.
        Index("ix_mails_unsent_customer", "customer_id", postgresql_where=UNSETTLED),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    message_id: Mapped[str] = mapped_column(String(MAX_MESSAGE_ID_LENGTH), unique=True)
    customer_id: Mapped[int] = mapped_column(BigInteger)
    #: The address the mail was sent to (none before it is sent).
    recipient: Mapped[str | None] = mapped_column(String(MAX_ADDRESS_LENGTH))
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
    #: Passes that found no contact for the customer yet (not failures: no give-up counts them).
    contact_waits: Mapped[int] = mapped_column(Integer, server_default="0")
    #: When and why the mail was settled without being sent (its customer was deactivated).
    skipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    skip_reason: Mapped[str | None] = mapped_column(String(MAX_REASON_LENGTH))


class Contact(Base):
    """A customer's contact data as the customer events last told it (event-carried state).

    Kept by :func:`notifications_service.contacts.apply_customer_events`, never by
    calling customers. The profile (username, name, email) and the status (active or
    not) each remember the ``sequence`` of the event that set them, so an older event
    delivered late never overwrites a newer one; a status known before the profile
    leaves the profile empty until its event comes. This is personal data: it is
    never logged (docs/events.rst, "Personal data on the broker").
    """

    __tablename__ = "contacts"

    customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    username: Mapped[str | None] = mapped_column(String(32))
    full_name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    profile_sequence: Mapped[int | None] = mapped_column(BigInteger)
    status_sequence: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


inbox = inbox_table(Base.metadata)
