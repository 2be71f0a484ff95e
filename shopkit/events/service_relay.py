"""The relay inside a service's process: a daemon thread per worker
(:mod:`shopkit.events.in_worker`), started with its first request, stopped when the
worker exits.

Every worker runs one; the relay's lease (:class:`shopkit.events.relay.Relay`) makes
one of them publish at a time. The relay has a small pool of its own (the lease's
connection and one to work with), so it never takes a connection from the
requests'. Nothing a request does waits for it or for the broker.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from flask import Flask
from sqlalchemy import Table
from sqlalchemy.exc import SQLAlchemyError

from shopkit.config import Settings
from shopkit.db import Database
from shopkit.events import outbox
from shopkit.events.in_worker import InWorker, start_with_first_request
from shopkit.events.metrics import OUTBOX_BACKLOG, init_event_metrics
from shopkit.events.relay import Relay, broker_client
from shopkit.metrics import before_scrape

log = logging.getLogger(__name__)


class ServiceRelay(InWorker):
    """One service's outbox relay in a daemon thread, stopped when the process exits."""

    def __init__(self, database_url: str, table: Table, events_url: str, service: str) -> None:
        database = Database(database_url, application_name=f"{service}-relay", pool_size=1)
        self.relay = Relay(database.engine, table, broker_client(events_url), service=service)
        super().__init__(f"{service} relay", database, self.relay)


def relay_with_first_request(
    app: Flask, table: Table, service: str, *, emits: Sequence[str] = ()
) -> ServiceRelay | None:
    """Run ``table``'s relay in ``app``'s workers when the broker's URL (``EVENTS_URL``) is
    set and the app is not ``TESTING``; the relay, or ``None`` when none runs.

    ``emits`` are the aggregates the outbox holds: their ``shop_events_published_total``
    and the service's ``shop_outbox_backlog`` exist at zero from the start, relay or not.

    It starts with the first request (a readiness probe, typically), so CLI commands
    such as ``db upgrade`` never start it. With the relay, ``shop_outbox_backlog`` is
    counted when ``/metrics`` is scraped, from the request's pool: it keeps growing
    while the broker is away, when the relay itself reports nothing.
    """
    init_event_metrics(app, service=service, emits=emits)
    settings: Settings = app.config["SHOP_SETTINGS"]
    if not settings.events_url or app.testing:
        return None
    database: Database = app.extensions["shop_db"]
    relay = ServiceRelay(database.url, table, settings.events_url, service)

    def _count_backlog() -> None:
        refresh_backlog(database, table, service)

    before_scrape(app, _count_backlog)
    app.extensions["shop_relay"] = relay
    start_with_first_request(app, relay)
    return relay


def refresh_backlog(database: Database, table: Table, service: str) -> int | None:
    """Count ``table``'s unpublished rows (:func:`shopkit.events.outbox.backlog`) as
    ``shop_outbox_backlog``.

    With the database away the gauge keeps its last value (``None``): the scrape
    still answers with every other metric.
    """
    try:
        with database.session() as session:
            count = outbox.backlog(session, table)
    except SQLAlchemyError:
        log.warning("could not count the %s outbox's backlog", service, exc_info=True)
        return None
    OUTBOX_BACKLOG.labels(service=service).set(count)
    return count
