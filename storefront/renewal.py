"""One renewal of a session's tokens at a time (single flight), per storefront process.

A refresh token works once: the customers service takes a second use of one as
theft and revokes every refresh token of the account. The pages make
concurrent requests on one cookie (several tabs reconnecting their live
streams on the same tick, a fragment reload beside the inbox count), so two
requests may find the same access token about to expire. The first one to
take the session's lock renews; the renewed tokens are kept for
:data:`KEEP_S` seconds, under the session id and the spent refresh token, and a
request that waited for the lock with that same refresh token takes them
instead of presenting it again.

The locks exist only while a renewal of their session is under way, and at
most :data:`MAX_KEPT` renewals are kept (a ``cachetools.TTLCache``: the oldest
go first): nothing grows with the number of sessions. Another storefront process does not see these;
a renewal race across processes stays possible but rare (its requests would
have to reach two processes within one renewal).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cachetools import TTLCache

from shopkit.service_client import DependencyUnavailable
from storefront.clients import Tokens

#: Seconds renewed tokens are kept for the session's concurrent requests.
KEEP_S = 30.0
#: Renewals kept at most.
MAX_KEPT = 10_000
#: Seconds a request waits for another request's renewal of its session.
WAIT_S = 10.0


class Renewals:
    """The process's renewals under way and just made."""

    def __init__(self, keep_s: float = KEEP_S, max_kept: int = MAX_KEPT) -> None:
        self._guard = threading.Lock()
        #: Session id → its lock and how many requests hold or wait for it.
        self._locks: dict[str, tuple[threading.Lock, list[int]]] = {}
        #: (session id, digest of the spent refresh token) → the renewed tokens; a TTLCache
        #: is not thread-safe, so it is used under ``_guard``.
        self._kept: TTLCache[tuple[str, str], Tokens] = TTLCache(
            maxsize=max_kept, ttl=keep_s, timer=time.monotonic
        )

    def renew(
        self, session_id: str, refresh_token: str, refresh: Callable[[str], Tokens]
    ) -> Tokens:
        """The tokens ``refresh_token`` was exchanged for: by ``refresh`` (the customers
        service's call), or the ones a concurrent request of this session just got."""
        key = (session_id, hashlib.sha256(refresh_token.encode()).hexdigest())
        with self._holding(session_id):
            kept = self._take(key)
            if kept is not None:
                return kept
            renewed = refresh(refresh_token)
            self._keep(key, renewed)
            return renewed

    @contextmanager
    def _holding(self, session_id: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.setdefault(session_id, (threading.Lock(), [0]))
            users[0] += 1
        try:
            if not lock.acquire(timeout=WAIT_S):
                raise DependencyUnavailable("customers")
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._guard:
                users[0] -= 1
                if users[0] == 0:
                    del self._locks[session_id]

    def _take(self, key: tuple[str, str]) -> Tokens | None:
        with self._guard:
            return self._kept.get(key)

    def _keep(self, key: tuple[str, str], tokens: Tokens) -> None:
        with self._guard:
            self._kept[key] = tokens


#: The storefront process's renewals.
RENEWALS = Renewals()
