"""Moderation: the queue of reviews by status and the decisions of admins.

Every decision (``approve``, ``flag`` or ``reject``) sets the review's status
and writes one moderation-log row with the moderator, the optional note and
the status before and after, in the same transaction. Any decision may
follow any status (a moderator may change their mind, or flag an approved
review that drew complaints); repeating the current status is allowed and
logged too. Each decision also writes its review event (``approved``,
``rejected`` or ``flagged``, :mod:`reviews_service.events`) in the same
transaction.

The queue lists one status, longest waiting first: ordered by the time the
review entered its status (``updated_at``, i.e. submission or the last edit
for ``pending``), then by id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reviews_service.events import DECIDED, emit_review_event
from reviews_service.models import ACTIONS, ModerationEntry, Review
from shopkit.db import transaction
from shopkit.pagination import paginate


def moderate(
    session: Session, review: Review, moderator: str, action: str, note: str | None
) -> ModerationEntry:
    """Apply ``action`` to ``review`` (locked by the caller) and log it."""
    with transaction(session):
        entry = ModerationEntry(
            review_id=review.id,
            moderator=moderator,
            action=action,
            note=note,
            from_status=review.status,
            to_status=ACTIONS[action],
        )
        review.status = ACTIONS[action]
        session.add(entry)
        session.flush()
        emit_review_event(session, DECIDED[action], review)
        return entry


def log_of(session: Session, review_id: int) -> list[ModerationEntry]:
    """The moderation log of a review, oldest decision first."""
    return list(
        session.execute(
            select(ModerationEntry)
            .where(ModerationEntry.review_id == review_id)
            .order_by(ModerationEntry.id)
        ).scalars()
    )


def queue(session: Session, status: str, page: int, page_size: int) -> dict[str, Any]:
    """A page of reviews in ``status``, longest waiting first."""
    statement = select(Review).where(Review.status == status).order_by(Review.updated_at, Review.id)
    return paginate(session, statement, page, page_size)
