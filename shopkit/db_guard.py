"""A client-side bound on every database round trip, even when the server is frozen.

``statement_timeout`` is enforced by the server: a PostgreSQL stopped with
SIGSTOP (or a network that silently drops packets) never answers, and a
thread blocked in libpq would wait for ever. Every psycopg2 connection made by
:class:`~shopkit.db.Database` is a :class:`GuardedConnection`: each
``execute``, ``commit`` and ``rollback`` registers the connection's socket
with a watchdog thread until it returns. If it is still running when its
bound passes (the statement bound, or the request's deadline plus a short
grace so the saga can still write down where it stands), the watchdog shuts
the socket down: libpq sees the connection close, psycopg2 raises
``OperationalError`` and SQLAlchemy discards the connection. The request then
answers 503 ``database_unavailable`` instead of hanging.

The waits before a round trip are bounded by the request's deadline too: a
connection is not opened with less time left than libpq's ``connect_timeout``
(the connect would outlive the deadline), and the pool's wait for a free
connection (:class:`DeadlinePool`) ends at the deadline.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import psycopg2
import psycopg2.extensions
from sqlalchemy.pool import QueuePool

from shopkit import deadline

log = logging.getLogger(__name__)

#: Time a round trip may take beyond its request's deadline (to commit a saga's state). Half a
#: second is hundreds of such commits on a loaded server, and it leaves an answer under a
#: frozen PostgreSQL (``REQUEST_DEADLINE`` + this) 1.5 s inside the documented 10 s bound for
#: a busy machine's scheduling delays.
GRACE_S = 0.5
#: How often the watchdog looks while something is running.
TICK_S = 0.05


class _Watchdog:
    """Shuts down the sockets of round trips that outlived their bound."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._running: dict[int, tuple[int, float]] = {}  # id(conn) → (fd, until)
        self._thread: threading.Thread | None = None
        self._pid = 0

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        self._pid = os.getpid()  # a forked child needs its own thread
        self._thread = threading.Thread(target=self._run, name="db-watchdog", daemon=True)
        self._thread.start()

    def enter(self, conn: Any, until: float) -> None:
        with self._lock:
            self._ensure_thread()
            self._running[id(conn)] = (conn.fileno(), until)
        self._wake.set()

    def leave(self, conn: Any) -> None:
        with self._lock:
            self._running.pop(id(conn), None)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(TICK_S)
            now = time.monotonic()
            with self._lock:
                for key, (fd, until) in list(self._running.items()):
                    if now >= until:
                        del self._running[key]
                        _cut(fd)
                if not self._running:
                    self._wake.clear()


def _cut(fd: int) -> None:
    """Shut the socket down (the blocked libpq call returns); psycopg2 still owns the fd."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
        log.error("database round trip exceeded its bound: connection cut")
    except OSError:
        pass
    finally:
        sock.close()


_watchdog = _Watchdog()


class _Guard:
    """Context manager registering one round trip of ``conn`` with the watchdog."""

    __slots__ = ("conn",)

    def __init__(self, conn: GuardedConnection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        bound = time.monotonic() + self.conn.round_trip_bound_s
        request_deadline = deadline.current_deadline()
        if request_deadline is not None:
            bound = min(bound, request_deadline + GRACE_S)
        _watchdog.enter(self.conn, bound)

    def __exit__(self, *_exc: object) -> None:
        _watchdog.leave(self.conn)


class GuardedCursor(psycopg2.extensions.cursor):
    """A cursor whose statements are bounded by the watchdog."""

    def execute(self, query: Any, vars: Any = None) -> None:
        """Run one statement under the guard."""
        with _Guard(self.connection):
            super().execute(query, vars)

    def executemany(self, query: Any, vars_list: Any) -> None:
        """Run a statement for each parameter set under one guard."""
        with _Guard(self.connection):
            super().executemany(query, vars_list)


class GuardedConnection(psycopg2.extensions.connection):
    """A psycopg2 connection whose round trips (statements, commit, rollback) are bounded."""

    #: Seconds one round trip may take at most (set from the statement timeout).
    round_trip_bound_s = 6.0
    #: Seconds libpq may take to connect (its ``connect_timeout``).
    connect_bound_s = 2.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        left = deadline.remaining()
        if left is not None and left < self.connect_bound_s:
            # A database that does not answer would keep this request past its deadline.
            raise psycopg2.OperationalError(
                f"{max(left, 0.0):.1f} s of the request's time left: too little to connect"
            )
        super().__init__(*args, **kwargs)
        self.cursor_factory = GuardedCursor

    def commit(self) -> None:
        """Commit under the guard."""
        with _Guard(self):
            super().commit()

    def rollback(self) -> None:
        """Roll back under the guard."""
        with _Guard(self):
            super().rollback()


def connection_factory(
    round_trip_bound_s: float, connect_bound_s: float
) -> type[GuardedConnection]:
    """A :class:`GuardedConnection` class: round trips last at most ``round_trip_bound_s``,
    connecting at most ``connect_bound_s``."""
    return type(
        "BoundedConnection",
        (GuardedConnection,),
        {"round_trip_bound_s": round_trip_bound_s, "connect_bound_s": connect_bound_s},
    )


class DeadlinePool(QueuePool):
    """A ``QueuePool`` whose wait for a free connection ends at the request's deadline.

    ``pool_timeout`` still bounds the wait outside a request, and within one when
    it is sooner; SQLAlchemy reads the wait from ``_timeout`` on every checkout.
    """

    _pool_timeout: float = 30.0

    @property
    def _timeout(self) -> float:
        return deadline.bounded(self._pool_timeout)

    @_timeout.setter
    def _timeout(self, value: float) -> None:
        self._pool_timeout = value
