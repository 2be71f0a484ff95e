"""A consumer inside a service's process: a daemon thread per worker
(:mod:`shopkit.events.in_worker`), started with its first request, stopped when the
worker exits.

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

from collections.abc import Sequence

from flask import Flask
from sqlalchemy import Table

from shopkit.config import Settings
from shopkit.db import Database
from shopkit.events.consumer import BatchHandler, Consumer, Handler, default_consumer_name
from shopkit.events.in_worker import InWorker, start_with_first_request
from shopkit.events.metrics import init_event_metrics
from shopkit.events.relay import broker_client


class ServiceConsumer(InWorker):
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
        database = Database(database_url, application_name=f"{service}-{group}", pool_size=1)
        self.consumer = Consumer(
            broker_client(events_url, timeout_s=5.0),
            database.sessions,
            inbox,
            group=group,
            streams=streams,
            handler=handler,
            batch_handler=batch_handler,
        )
        super().__init__(f"{group} consumer", database, self.consumer)

    def start(self) -> None:
        """Start consuming, as a member named after this process.

        The name is taken here, in the worker that runs the thread, not when the
        app was built: an app built before the server forks its workers (gunicorn's
        ``--preload``) would otherwise give every worker its parent's pid, and the
        workers would take each other's pending entries for their own retries.
        """
        self.consumer.name = default_consumer_name()
        super().start()


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
    such as ``db upgrade`` never start it. The group's metrics exist at zero from
    the start, consumer or not.
    """
    init_event_metrics(app, service=service, groups={group: list(streams)})
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
    start_with_first_request(app, consumer)
    return consumer
