"""Contacts: each customer's address, name and status, kept from customer events.

The notifications service addresses its mails without calling customers: the
customer events (``shop.customer.registered.v1``, ``updated``, ``deactivated``,
``reactivated``) carry the contact data, and :func:`apply_customer_events` keeps one
:class:`~notifications_service.models.Contact` per customer, inside the consumer's
transaction (so each event applies once: the inbox).

Order. One customer's events arrive in ``sequence`` order except around failures (a
retried or dead-lettered event can come after a newer one, docs/events.rst). The
profile (``registered`` and ``updated``) and the status (``registered``,
``deactivated`` and ``reactivated``) each keep the sequence of the event that last set
them and take an event's values only if its sequence is higher: an older event
delivered late changes nothing, and a deactivation told before the registration
(whose event is being retried) is not undone by it.

A contact that arrives or changes wakes its customer's mails that are waiting
(:mod:`notifications_service.mailer`), so they go at once rather than after their
back-off; a mail a sender holds at that moment is skipped, never waited for
(:func:`wake`). Nothing here logs the contact data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from notifications_service.models import Contact, Mail
from shopkit.events.envelope import Event
from shopkit.events.ordering import newest_by, sequence_of

#: The event types that carry the profile, and the status each type sets.
PROFILE_EVENTS = ("registered", "updated")
STATUS_OF = {"registered": True, "reactivated": True, "deactivated": False}


@dataclass
class _Told:
    """What one batch's events told about one customer (the newest of each part)."""

    customer_id: int
    username: str | None = None
    full_name: str | None = None
    email: str | None = None
    profile_sequence: int | None = None
    active: bool = True
    status_sequence: int | None = None


def fold(events: Iterable[Event]) -> list[_Told]:
    """The newest profile and status each customer's ``events`` told, by sequence, in
    ascending customer id order.

    An event without a ``sequence`` cannot be ordered against the others: it fails
    (:class:`~shopkit.events.ordering.UnorderedEvent`, a ``ValueError``), and is
    retried, then dead-lettered, on its own.
    """
    told = list(events)
    profiles = newest_by([e for e in told if _name(e) in PROFILE_EVENTS], _customer_of)
    statuses = newest_by([e for e in told if _name(e) in STATUS_OF], _customer_of)
    folded = []
    for customer_id in sorted(profiles.keys() | statuses.keys()):
        state = _Told(customer_id)
        profile = profiles.get(customer_id)
        if profile is not None:
            state.username = profile.data["username"]
            state.full_name = profile.data["full_name"]
            state.email = profile.data["email"]
            state.profile_sequence = sequence_of(profile)
        status = statuses.get(customer_id)
        if status is not None:
            state.active = STATUS_OF[_name(status)]
            state.status_sequence = sequence_of(status)
        folded.append(state)
    return folded


def _name(event: Event) -> str:
    return event.type.split(".")[2]


def _customer_of(event: Event) -> int:
    return int(event.data["customer_id"])


def apply_customer_events(session: Session, events: list[Event]) -> None:
    """Keep the contacts ``events`` tell (one statement), then wake their waiting mails.

    Runs inside the consumer's transaction; a part of a contact changes only for an
    event newer (by sequence) than the one that last set it. Rows are written (so locked)
    in ascending customer id order, and mails in ascending id order: two workers applying
    batches about the same customers queue instead of deadlocking.
    """
    told = fold(events)
    if not told:
        return
    statement = insert(Contact).values([asdict(state) for state in told])
    new, old = statement.excluded, Contact.__table__.c
    newer_profile = new.profile_sequence > func.coalesce(old.profile_sequence, -1)
    newer_status = new.status_sequence > func.coalesce(old.status_sequence, -1)

    def pick(column: str, newer: Any) -> Any:
        return case((newer, new[column]), else_=old[column])

    session.execute(
        statement.on_conflict_do_update(
            index_elements=[old.customer_id],
            set_={
                "username": pick("username", newer_profile),
                "full_name": pick("full_name", newer_profile),
                "email": pick("email", newer_profile),
                "profile_sequence": pick("profile_sequence", newer_profile),
                "active": pick("active", newer_status),
                "status_sequence": pick("status_sequence", newer_status),
                "updated_at": func.now(),
            },
        )
    )
    wake(session, [state.customer_id for state in told])


def wake(session: Session, customer_ids: list[int]) -> None:
    """Make these customers' unsettled mails due now, but for those a sender holds.

    A mail waiting for its contact is due again once the contact exists (sent, or
    skipped if the customer is deactivated), without waiting out its back-off; a mail
    in a failed send's back-off is tried earlier. A mail a sender holds at this moment
    is skipped (``FOR UPDATE SKIP LOCKED``): the sender keeps its lock for as long as
    its SMTP exchange, and waiting for it would hold this whole consumer batch (other
    customers' order and wallet events too) past its statement timeout. Such a mail is
    being sent, or about to be deferred by a sender that found no contact; that sender
    reads the contact again right before deferring
    (:func:`notifications_service.mailer.addressee`), so at worst a contact committed
    in between leaves the mail to wait out its back-off, and it goes then.
    """
    free = (
        select(Mail.id)
        .where(
            Mail.customer_id.in_(customer_ids), Mail.sent_at.is_(None), Mail.skipped_at.is_(None)
        )
        .order_by(Mail.id)
        .with_for_update(skip_locked=True)
    )
    session.execute(
        update(Mail).where(Mail.id.in_(free.scalar_subquery())).values(next_attempt_at=func.now())
    )
