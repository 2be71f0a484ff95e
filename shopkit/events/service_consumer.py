"""A consumer inside a service's process: a daemon thread per worker, started with its first
request, stopped when the worker exits.

Services whose event-carried state is small (inventory's ratings, reviews' verified
purchases) consume in their own workers rather than in a process of their own:
every worker is one member of the group, the group shares the entries between
them, and one claims a dead worker's pending entries
(:class:`shopkit.events.consumer.Consumer`). The consumer has a small pool of its
own, so it never takes a connection from the requests', and nothing a request does
waits for it or for the broker. The notifications service, whose work (mails) is
slow and not request-shaped, runs its consumer as a worker process instead.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Sequence

from flask import Flask
from sqlalchemy import Table

from shopkit.config import Settings
from shopkit.db import Database
from shopkit.events.consumer import BatchHandler, Consumer, Handler, default_consumer_name
from shopkit.events.relay import broker_client

log = logging.getLogger(__name__)

#: How long the consumer thread gets to finish its batch when the process exits.
STOP_TIMEOUT_S = 5.0


class ServiceConsumer:
    """One consumer group member in a daemon thread, stopped when the process exits."""

    def __init__(
        self,
        database_url: str,
        events_url: str,
        inbox: Table,
        *,
        service: str,
        group: str,
        streams: Sequence[str],
        handler: Handler | None = None,
        batch_handler: BatchHandler | None = None,
    ) -> None:
        self.database = Database(database_url, application_name=f"{service}-{group}", pool_size=1)
        self.consumer = Consumer(
            broker_client(events_url, timeout_s=5.0),
            self.database.sessions,
            inbox,
            group=group,
            streams=streams,
            handler=handler,
            batch_handler=batch_handler,
        )
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None

    @property
    def started(self) -> bool:
        """Whether the thread was started."""
        return self._thread is not None

    def start(self) -> None:
        """Start consuming, as a member named after this process.

        The name is taken here, in the worker that runs the thread, not when the
        app was built: an app built before the server forks its workers (gunicorn's
        ``--preload``) would otherwise give every worker its parent's pid, and the
        workers would take each other's pending entries for their own retries.
        """
        self.consumer.name = default_consumer_name()
        self._thread, self._stop = self.consumer.start_thread()
        atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the thread after its batch and wait for it, boundedly."""
        if self._thread is None or self._stop is None:
            return
        self._stop.set()
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning(
                "the %s consumer did not stop within %.0fs", self.consumer.group, STOP_TIMEOUT_S
            )
        self.consumer.broker.close()
        self.database.dispose()
        self._thread = None


def consumer_with_first_request(
    app: Flask,
    inbox: Table,
    *,
    service: str,
    group: str,
    streams: Sequence[str],
    handler: Handler | None = None,
    batch_handler: BatchHandler | None = None,
) -> ServiceConsumer | None:
    """Run group ``group`` on ``streams`` in ``app``'s workers when the broker's URL
    (``EVENTS_URL``) is set and the app is not ``TESTING``; the consumer, or ``None``.

    It starts with the first request (a readiness probe, typically), so CLI commands
    such as ``db upgrade`` never start it.
    """
    settings: Settings = app.config["SHOP_SETTINGS"]
    if not settings.events_url or app.testing:
        return None
    consumer = ServiceConsumer(
        app.extensions["shop_db"].url,
        settings.events_url,
        inbox,
        service=service,
        group=group,
        streams=streams,
        handler=handler,
        batch_handler=batch_handler,
    )
    app.extensions.setdefault("shop_consumers", {})[group] = consumer
    started = threading.Lock()

    @app.before_request
    def _start_consumer() -> None:
        if not consumer.started and started.acquire(blocking=False):
            consumer.start()

    return consumer
