"""A bulkhead and a circuit breaker per dependency, used by ``ServiceClient``.

* The **bulkhead** caps how many calls to one dependency a worker process has
  in flight, so a dependency that hangs can hold only that many of the
  worker's threads; the next caller waits a moment for a slot, then gets 503.
* The **circuit breaker** opens after ``fail_max`` failures in a row: logical
  calls that failed (unreachable, kept answering 5xx of its own, ran out of
  time), and each attempt that timed out, counted the moment it timed out
  rather than when its call gives up, so a dependency that hangs opens the
  circuit as soon as one that errors would. A 5xx that reports a failure
  further down (``sale_pending``, ``dependency_unavailable``: see
  ``json_http.DOWNSTREAM_CODES``) is an answer from a healthy dependency
  and counts as a success. For ``reset_s`` every
  call fails at once with 503 instead of waiting for its timeouts. Then one
  trial call goes through (half-open); its success closes the circuit, its
  failure opens it again.

Why not a library: ``pybreaker`` (1.4) holds its lock for the whole guarded
call (``CircuitBreaker.call``: ``with self._lock: return self.state.call(...)``),
which would serialise every call to a dependency across a worker's threads;
``circuitbreaker`` (2.1) keeps unsynchronised counters and lets every caller
through at once when half-open. The state machine below is small, holds its
lock only to read or change the state, and lets exactly one trial through.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from shopkit import deadline

log = logging.getLogger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class Rejected(Exception):
    """The call was not made: the circuit is open, or the bulkhead has no free slot."""


class CircuitBreaker:
    """Consecutive-failure circuit breaker with a single half-open trial."""

    def __init__(self, name: str, *, fail_max: int = 5, reset_s: float = 5.0) -> None:
        self.name = name
        self.fail_max = fail_max
        self.reset_s = reset_s
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_running = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open`` (open turns half-open once ``reset_s`` passed)."""
        with self._lock:
            if self._state == OPEN and time.monotonic() - self._opened_at >= self.reset_s:
                return HALF_OPEN
            return self._state

    def before_call(self) -> bool:
        """Admit a call or raise :class:`Rejected`; returns True when it is the half-open trial."""
        with self._lock:
            if self._state == CLOSED:
                return False
            if self._state == OPEN and time.monotonic() - self._opened_at < self.reset_s:
                raise Rejected(f"the circuit to {self.name} is open")
            if self._trial_running:
                raise Rejected(f"the circuit to {self.name} is half-open; a trial is running")
            self._state = HALF_OPEN
            self._trial_running = True
            return True

    def succeeded(self, trial: bool) -> None:
        """Record a call that got an answer; a successful trial closes the circuit."""
        with self._lock:
            self._failures = 0
            if trial:
                self._trial_running = False
                if self._state != CLOSED:
                    log.warning("circuit to %s closed", self.name)
                self._state = CLOSED

    def failed(self, trial: bool) -> bool:
        """Record a failed call; ``fail_max`` in a row (or a failed trial) open the circuit.
        Whether the circuit is open now."""
        with self._lock:
            self._failures += 1
            if trial:
                self._trial_running = False
            if trial or (self._state == CLOSED and self._failures >= self.fail_max):
                if self._state != OPEN:
                    log.warning("circuit to %s opened after %d failures", self.name, self._failures)
                self._state = OPEN
                self._opened_at = time.monotonic()
            return self._state == OPEN

    def timed_out(self, trial: bool) -> bool:
        """Record an attempt that got no answer in time; True when the circuit is now open.

        It counts as a failure at once, before any retry: the caller stops
        retrying into a circuit that this timeout (or others) opened.
        """
        return self.failed(trial)


class Bulkhead:
    """At most ``limit`` concurrent calls; a caller waits up to ``wait_s`` for a slot."""

    def __init__(self, name: str, *, limit: int, wait_s: float = 1.0) -> None:
        self.name = name
        self.limit = limit
        self.wait_s = wait_s
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the duration of the block, or raise :class:`Rejected`."""
        if not self._slots.acquire(timeout=deadline.bounded(self.wait_s)):
            raise Rejected(f"{self.limit} calls to {self.name} are already in flight")
        try:
            yield
        finally:
            self._slots.release()


class DependencyGuard:
    """The bulkhead and circuit breaker of one dependency."""

    def __init__(
        self, name: str, *, max_concurrent: int = 3, fail_max: int = 5, reset_s: float = 5.0
    ) -> None:
        self.bulkhead = Bulkhead(name, limit=max_concurrent)
        self.breaker = CircuitBreaker(name, fail_max=fail_max, reset_s=reset_s)
