"""Deleting what the event tables no longer need: in short chunks, on a schedule.

The relay prunes its outbox (:func:`shopkit.events.outbox.prune`) and each
consumer its group's inbox (:func:`shopkit.events.consumer.prune_inbox_rows`)
the same way: a chunk of rows per short transaction until a chunk comes back
short, at most once per interval, while there is nothing else to do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from shopkit.db import local_statement_timeout

log = logging.getLogger(__name__)


def in_chunks(
    new_session: Callable[[], Session],
    delete_chunk: Callable[[Session], int],
    *,
    batch: int,
    timeout_ms: int | None,
) -> int:
    """Run ``delete_chunk`` (it deletes at most ``batch`` rows and says how many), each time
    in a transaction of its own bounded by ``timeout_ms`` (``None``: the session's own
    bound), until it deletes fewer than ``batch``; how many rows went in all."""
    pruned = 0
    while True:
        with new_session() as session, session.begin():
            local_statement_timeout(session, timeout_ms)
            deleted = delete_chunk(session)
        pruned += deleted
        if deleted < batch:
            return pruned


class Schedule:
    """Runs a prune at most once per interval (the first time at once) and logs it; a database
    or broker failure is logged and tried again at the next interval."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._due_at = 0.0

    def run_when_due(self, interval_s: float, prune: Callable[[], int]) -> None:
        """Call ``prune`` if ``interval_s`` has passed since the last call."""
        now = time.monotonic()
        if now < self._due_at:
            return
        self._due_at = now + interval_s
        try:
            pruned = prune()
        except (redis.RedisError, SQLAlchemyError) as error:
            log.warning("%s could not prune: %s", self.what, error)
            return
        if pruned:
            log.info("%s pruned %d rows", self.what, pruned)
