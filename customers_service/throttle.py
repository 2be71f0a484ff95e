"""Throttling of logins, service-token grants and registrations, shared by every process.

The state lives in PostgreSQL (``customers.throttle_buckets``), so a limit holds
across gunicorn workers, processes and hosts alike. A *bucket* counts attempts of
one account (``login:account:ada``) or one client address
(``login:address:10.0.0.7``) within a window; once a bucket reaches its limit it
is blocked, first for ``THROTTLE_BLOCK`` seconds, then twice as long with each
further counted attempt (at most the window). A blocked bucket is answered at
once with 429 ``too_many_attempts`` and ``Retry-After``, *before* any password
hash is computed: a flood against one account costs one indexed read per
request and cannot crowd out other accounts' logins.

Each process also remembers the blocks it has seen until they end, so a flood's
requests are refused without even that read. Wrong credentials count against
the account and the address; a success clears the account's bucket. Every
registration counts against its address. Unknown usernames count like real
ones, so a 429 tells nothing about which exist.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import Interval, case, delete, func, select, type_coerce, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from customers_service.models import ThrottleBucket
from shopkit.config import Settings
from shopkit.db import transaction
from shopkit.errors import ProblemError, Unauthorized

T = TypeVar("T")
#: Bucket names are cut to the column's width (an address or username is far shorter).
MAX_BUCKET = 200
#: Blocks this process has seen: bucket -> ``time.monotonic()`` when the block ends.
_known_blocks: dict[str, float] = {}
_known_lock = threading.Lock()
#: At most this many remembered blocks (the oldest are forgotten first).
MAX_KNOWN_BLOCKS = 10_000


def _remember(bucket: str, seconds: float) -> None:
    with _known_lock:
        _known_blocks.pop(bucket, None)
        while len(_known_blocks) >= MAX_KNOWN_BLOCKS:
            del _known_blocks[next(iter(_known_blocks))]
        _known_blocks[bucket] = time.monotonic() + seconds


@dataclass(frozen=True)
class Check:
    """One bucket and the number of attempts within ``window_s`` that blocks it."""

    bucket: str
    limit: int
    window_s: int
    block_s: int


def _check(settings: Settings, kind: str, scope: str, value: str, limit: int) -> Check:
    return Check(
        f"{kind}:{scope}:{value}"[:MAX_BUCKET],
        limit,
        settings.throttle_window_s,
        settings.throttle_block_s,
    )


def credential_checks(settings: Settings, kind: str, subject: str, address: str) -> list[Check]:
    """The account (or client) bucket and the address bucket of a credential check."""
    return [
        _check(settings, kind, "account", subject.lower(), settings.throttle_account_failures),
        _check(settings, kind, "address", address, settings.throttle_address_failures),
    ]


def registration_check(settings: Settings, address: str) -> Check:
    """The bucket counting registrations from one client address."""
    return _check(settings, "register", "address", address, settings.throttle_registrations)


class TooManyAttempts(ProblemError):
    """429 ``too_many_attempts`` with ``Retry-After`` (seconds)."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            429,
            "too_many_attempts",
            f"Too many attempts: try again in {retry_after_s} s.",
            headers={"Retry-After": str(retry_after_s)},
            retry_after=retry_after_s,
        )


def forget_known_blocks() -> None:
    """Forget the blocks this process remembers (after the table was emptied, in tests)."""
    with _known_lock:
        _known_blocks.clear()


def has_known_blocks() -> bool:
    """False when this process remembers no block at all (then none is known here)."""
    return bool(_known_blocks)


def known_block(buckets: Iterable[str]) -> int | None:
    """Seconds until the last of ``buckets`` this process knows blocked is free, or ``None``.

    Only this process's memory is consulted (no database): cheap enough to run
    before a request is even parsed (:mod:`customers_service.throttle_gate`).
    """
    now = time.monotonic()
    longest = max((_known_blocks.get(bucket, 0.0) - now for bucket in buckets), default=0.0)
    return max(1, int(longest + 0.999)) if longest > 0 else None


def ensure_not_blocked(session: Session, checks: Sequence[Check]) -> None:
    """Raise :class:`TooManyAttempts` while any of the buckets is blocked."""
    known = known_block(c.bucket for c in checks)
    if known is not None:
        raise TooManyAttempts(known)
    rows = session.execute(
        select(
            ThrottleBucket.bucket, type_coerce(ThrottleBucket.blocked_until - func.now(), Interval)
        ).where(
            ThrottleBucket.bucket.in_([c.bucket for c in checks]),
            ThrottleBucket.blocked_until > func.now(),
        )
    ).all()
    for bucket, remaining in rows:
        _remember(bucket, remaining.total_seconds())
    if rows:
        longest = max(remaining.total_seconds() for _, remaining in rows)
        raise TooManyAttempts(max(1, int(longest + 0.999)))


def record(session: Session, check: Check) -> int:
    """Count one attempt in ``check``'s bucket (blocking it at the limit); return the count."""
    table = ThrottleBucket.__table__
    stale = table.c.window_started_at < func.now() - timedelta(seconds=check.window_s)
    statement = (
        insert(ThrottleBucket)
        .values(bucket=check.bucket, attempts=1, window_started_at=func.now())
        .on_conflict_do_update(
            index_elements=[table.c.bucket],
            set_={
                "attempts": case((stale, 1), else_=table.c.attempts + 1),
                "window_started_at": case((stale, func.now()), else_=table.c.window_started_at),
                "blocked_until": case((stale, None), else_=table.c.blocked_until),
            },
        )
        .returning(table.c.attempts)
    )
    attempts = int(session.execute(statement).scalar_one())
    if attempts >= check.limit:
        block_s = min(check.window_s, check.block_s * 2 ** min(attempts - check.limit, 16))
        session.execute(
            update(ThrottleBucket)
            .where(ThrottleBucket.bucket == check.bucket)
            .values(blocked_until=func.now() + timedelta(seconds=block_s))
        )
        _remember(check.bucket, block_s)  # once committed by the caller; a rollback is rare
    return attempts


def clear(session: Session, check: Check) -> None:
    """Forget a bucket's attempts (a successful login)."""
    session.execute(delete(ThrottleBucket).where(ThrottleBucket.bucket == check.bucket))


def guarded(session: Session, checks: Sequence[Check], attempt: Callable[[], T]) -> T:
    """Run a credential check ``attempt`` unless a bucket is blocked.

    An :class:`~shopkit.errors.Unauthorized` from ``attempt`` (wrong credentials)
    rolls its work back, is counted in every bucket in a transaction of its own, and
    is raised again. On success the first bucket (the account's) is cleared and
    committed with the attempt's work: the guarded attempt is one unit of work
    (``attempt``'s own :func:`~shopkit.db.transaction` joins it).
    """
    ensure_not_blocked(session, checks)
    try:
        with transaction(session):
            result = attempt()
            clear(session, checks[0])
    except Unauthorized:
        with transaction(session):
            for check in checks:
                record(session, check)
        raise
    return result


def count_attempt(session: Session, check: Check) -> None:
    """Count an attempt up front (registrations), committed at once; 429 while blocked."""
    with transaction(session):
        ensure_not_blocked(session, [check])
        record(session, check)
