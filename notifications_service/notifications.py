"""Business operations of the notifications service: turn events into messages, list, mark read.

:func:`apply_events` is the consumer group's batch handler: it runs inside
the consumer's transaction, which also records the events in the inbox, so
each event makes its notification exactly once however often it is
delivered. Order and wallet events concern the customer in their ``data``;
customer events keep the customers' contacts (:mod:`notifications_service.contacts`);
every other type is ignored (and still recorded as applied). Each order event
also records its mail (:class:`~notifications_service.models.Mail`) in that
same transaction: the sender (:mod:`notifications_service.mailer`) sends it
after the commit to the customer's contact, so a redelivered event never makes a
second mail.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session

from notifications_service.contacts import apply_customer_events
from notifications_service.models import MAX_BODY_LENGTH, UNSETTLED, Mail, Notification
from shopkit.db import transaction
from shopkit.errors import NotFound
from shopkit.events.catalog import stream_for
from shopkit.events.envelope import Event
from shopkit.pagination import paginate

#: The consumer group, and the streams it reads.
GROUP = "notifications"
STREAMS = (stream_for("order"), stream_for("wallet"), stream_for("customer"))


def _short(order_id: object) -> str:
    return str(order_id)[:8]


def _order_text(event: str, data: Mapping[str, Any]) -> tuple[str, str] | None:
    order = _short(data.get("order_id"))
    texts: dict[str, Callable[[], tuple[str, str]]] = {
        "placed": lambda: ("Order received", f"We received your order {order}."),
        "completed": lambda: (
            "Order confirmed",
            f"Your order {order} is paid: {data.get('total')}.",
        ),
        "failed": lambda: (
            "Order not completed",
            f"Your order {order} could not be completed ({data.get('failure_code')}); "
            "nothing was charged.",
        ),
        "cancelled": lambda: ("Order cancelled", f"Your order {order} was cancelled and refunded."),
        "shipped": lambda: (
            "Order shipped",
            f"Your order {order} is on its way with {data.get('carrier')}, "
            f"tracking number {data.get('tracking_number')}.",
        ),
        "delivered": lambda: ("Order delivered", f"Your order {order} was delivered."),
    }
    make = texts.get(event)
    return make() if make else None


def _wallet_text(event: str, data: Mapping[str, Any]) -> tuple[str, str] | None:
    titles = {"credited": "Wallet credited", "debited": "Wallet debited",
              "refunded": "Refund received"}  # fmt: skip
    title = titles.get(event)
    if title is None:
        return None
    return title, f"{data.get('amount')} ({event}); your balance is {data.get('balance')}."


def message_for(event: Event) -> tuple[str, str] | None:
    """The ``(title, body)`` of the notification ``event`` makes, or ``None`` for no message."""
    parts = event.type.split(".")
    if len(parts) != 4:
        return None
    _, aggregate, name, _version = parts
    if aggregate == "order":
        return _order_text(name, event.data)
    if aggregate == "wallet":
        return _wallet_text(name, event.data)
    return None


#: The domain of the ``Message-ID`` of every mail.
MESSAGE_ID_DOMAIN = "notifications.shop"


def message_id_for(event_id: str | uuid.UUID) -> str:
    """The mail's ``Message-ID``, from the event id alone: the same on every (re)send."""
    return f"<{uuid.UUID(str(event_id))}@{MESSAGE_ID_DOMAIN}>"


#: Core inserts of the tables, built once: the ORM's bulk insert (``insert(Notification)``)
#: was about a quarter of the consumer's CPU per batch, for rows it never loads again.
_INSERT_NOTIFICATIONS = insert(Notification.__table__)
_INSERT_MAILS = insert(Mail.__table__)


def apply_events(session: Session, events: list[Event]) -> None:
    """The batch handler: one notification per order or wallet event, one mail per order event,
    and the contacts customer events tell.

    Each kind is written in one statement, in the consumer's transaction. A mail is
    addressed when it is sent (the contact may arrive after the order's event).
    """
    rows = []
    mails = []
    apply_customer_events(session, [e for e in events if e.aggregate == "customer"])
    for event in events:
        text = message_for(event)
        customer_id = event.data.get("customer_id")
        if text is None or not isinstance(customer_id, int):
            continue
        title, body = text
        rows.append(
            {
                "customer_id": customer_id,
                "event_id": uuid.UUID(event.id),
                "type": event.type,
                "subject": event.subject,
                "title": title,
                "body": body[:MAX_BODY_LENGTH],
                "occurred_at": event.time,
            }
        )
        if event.type.split(".")[1] == "order":
            mails.append(
                {
                    "event_id": uuid.UUID(event.id),
                    "message_id": message_id_for(event.id),
                    "customer_id": customer_id,
                    "subject": title,
                    "body": body[:MAX_BODY_LENGTH],
                }
            )
    if rows:
        session.execute(_INSERT_NOTIFICATIONS, rows)
    if mails:
        session.execute(_INSERT_MAILS, mails)


def list_for(
    session: Session, customer_id: int, page: int, page_size: int, *, unread: bool = False
) -> dict[str, Any]:
    """A page of ``customer_id``'s notifications, newest first (only unread ones if asked)."""
    statement = select(Notification).where(Notification.customer_id == customer_id)
    if unread:
        statement = statement.where(Notification.read_at.is_(None))
    result = paginate(session, statement.order_by(Notification.id.desc()), page, page_size)
    result["unread"] = session.execute(
        select(func.count())
        .select_from(Notification)
        .where(Notification.customer_id == customer_id, Notification.read_at.is_(None))
    ).scalar_one()
    return result


def mark_read(session: Session, customer_id: int, notification_id: int) -> Notification:
    """Mark one of ``customer_id``'s notifications read (404 if it is not theirs); it."""
    with transaction(session):
        notification = session.execute(
            select(Notification)
            .where(Notification.id == notification_id, Notification.customer_id == customer_id)
            .with_for_update()
        ).scalar_one_or_none()
        if notification is None:
            raise NotFound("No such notification.")
        if notification.read_at is None:
            notification.read_at = datetime.now(UTC)
        return notification


def mark_all_read(session: Session, customer_id: int) -> int:
    """Mark every unread notification of ``customer_id`` read; how many were unread."""
    with transaction(session):
        done = session.execute(
            update(Notification)
            .where(Notification.customer_id == customer_id, Notification.read_at.is_(None))
            .values(read_at=func.now())
        )
        return int(done.rowcount or 0)  # type: ignore[attr-defined]


def effects_of(session: Session, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    """What each of ``event_ids`` made here: notifications, mails, and mails not settled yet.

    The audit reads it through ``GET /admin/events/inbox`` to check that each
    event made one notification (and an order event one mail), never two, and that
    mails go out. ``mails_unsent`` counts the mails the sender still has to send or
    skip (:data:`~notifications_service.models.UNSETTLED`): a mail skipped because its
    customer is deactivated is settled, not waiting to be sent.
    """
    found: dict[uuid.UUID, dict[str, int]] = {}
    made = session.execute(
        select(Notification.event_id, func.count())
        .where(Notification.event_id.in_(event_ids))
        .group_by(Notification.event_id)
    )
    for event_id, count in made:
        found.setdefault(event_id, {})["notifications"] = int(count)
    mails = session.execute(
        select(Mail.event_id, func.count(), func.count().filter(text(UNSETTLED)))
        .where(Mail.event_id.in_(event_ids))
        .group_by(Mail.event_id)
    )
    for event_id, count, unsent in mails:
        found.setdefault(event_id, {}).update(mails=int(count), mails_unsent=int(unsent))
    return found
