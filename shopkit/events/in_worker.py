"""A background loop (an outbox relay, a consumer group member) in a daemon thread of a
service's worker: started with the worker's first request, stopped when the worker exits.

It starts with the first request (a readiness probe, typically), so CLI commands such as
``db upgrade`` never start it; it has a small pool of its own, so it never takes a
connection from the requests', and nothing a request does waits for it or for the broker.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Protocol

import redis
from flask import Flask

from shopkit.db import Database

log = logging.getLogger(__name__)

#: How long the thread gets to finish its round when the process exits.
STOP_TIMEOUT_S = 5.0


class Loop(Protocol):
    """What runs in the thread: :class:`~shopkit.events.relay.Relay` or
    :class:`~shopkit.events.consumer.Consumer`."""

    broker: redis.Redis

    def start_thread(self) -> tuple[threading.Thread, threading.Event]:
        """Run the loop in a daemon thread; set the returned event to stop it."""
        ...


class InWorker:
    """``loop`` in a daemon thread of this process, on ``database`` (its own pool)."""

    def __init__(self, name: str, database: Database, loop: Loop) -> None:
        self.name = name
        self.database = database
        self.loop = loop
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None

    @property
    def started(self) -> bool:
        """Whether the thread was started."""
        return self._thread is not None

    def start(self) -> None:
        """Start the loop in its thread; it stops when the process exits."""
        self._thread, self._stop = self.loop.start_thread()
        atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the thread after its round and wait for it, boundedly; close its clients."""
        if self._thread is None or self._stop is None:
            return
        self._stop.set()
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("the %s did not stop within %.0fs", self.name, STOP_TIMEOUT_S)
        self.loop.broker.close()
        self.database.dispose()
        self._thread = None


def start_with_first_request(app: Flask, worker: InWorker) -> None:
    """Start ``worker`` with the first request ``app`` serves in this process."""
    started = threading.Lock()

    @app.before_request
    def _start() -> None:
        if not worker.started and started.acquire(blocking=False):
            worker.start()
