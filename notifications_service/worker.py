"""The notifications worker: ``python -m notifications_service.worker``.

Runs the ``notifications`` consumer group on the order, wallet and customer streams and
the mail sender (:mod:`notifications_service.mailer`) until SIGTERM or
SIGINT, with the database, the broker (``EVENTS_URL``) and the mail server
(``SMTP_URL``) of :class:`~shopkit.config.Settings`, serving its metrics on
``WORKER_METRICS_PORT`` (5104). Several workers may run:
they share the group's entries, one takes over a dead one's pending entries,
and the sender's row locks keep them from sending one mail twice at once.
Given the app's ``SHOP_FAULTS_DIR``, the worker feels the faults switched on at
the app's ``/admin/faults`` (:mod:`shopkit.faults`).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session

from notifications_service import mailer
from notifications_service.models import inbox
from notifications_service.notifications import GROUP, STREAMS, apply_events
from shopkit import faults
from shopkit.config import Settings
from shopkit.db import Database, resolve_database_url
from shopkit.events.consumer import Consumer
from shopkit.events.metrics import serve_worker_metrics
from shopkit.events.relay import broker_client
from shopkit.telemetry import init_tracing

log = logging.getLogger(__name__)

#: The names the worker's database connections carry (``pg_stat_activity.application_name``):
#: its consumer's and its mail sender's, so that each one's work on the server can be told apart.
APPLICATION_NAME = "notifications-worker"
MAILER_APPLICATION_NAME = "notifications-mailer"


def make_sessions(
    database_url: str, application_name: str = APPLICATION_NAME
) -> Callable[[], Session]:
    """Sessions on ``database_url`` for one of the worker's loops (a pool of one, and one more
    at most).

    The services' :class:`~shopkit.db.Database`: every connect and round trip is
    bounded, so a frozen database holds up neither loop for long, and statement
    parameters stay out of error messages (they hold customers' contact data, and
    a failed event's error is logged and kept with its dead letter). With tracing
    on, the consumer's SQL is traced beneath its spans.
    """
    return Database(database_url, application_name=application_name, pool_size=1).sessions


def build_consumer(
    database_url: str, events_url: str, sessions: Callable[[], Session] | None = None
) -> Consumer:
    """The group's consumer on ``database_url`` and the broker at ``events_url``."""
    return Consumer(
        broker_client(events_url, timeout_s=5.0),
        sessions or make_sessions(database_url),
        inbox,
        group=GROUP,
        streams=STREAMS,
        batch_handler=apply_events,
    )


def main() -> None:
    """Consume and send mails until told to stop."""
    settings = Settings.from_env("notifications")
    logging.basicConfig(level=settings.log_level)
    if not settings.events_url:
        raise SystemExit("EVENTS_URL is not set: the notifications worker has no broker to read")
    # Its consumer's spans link to the producers' traces (off unless OTEL_* variables say).
    # No HTTP client to instrument: it talks to the database, the broker and SMTP only.
    init_tracing("notifications", clients=())
    # The service's live faults (its app's /admin/faults, when both share SHOP_FAULTS_DIR):
    # broker faults on consume, and the consumer's crash points.
    faults.install("notifications")
    target = mailer.SmtpTarget.from_url(settings.smtp_url)
    database_url = resolve_database_url(settings)
    consumer = build_consumer(database_url, settings.events_url)
    serve_worker_metrics(settings.worker_metrics_port, {GROUP: STREAMS})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("notifications consumer %s reading %s", consumer.name, ", ".join(STREAMS))
    consuming = threading.Thread(target=consumer.run, args=(stop,), name="consumer")
    consuming.start()
    try:
        mailer.run(
            make_sessions(database_url, MAILER_APPLICATION_NAME), target, settings.mail_from, stop
        )
    finally:
        stop.set()
        consuming.join(timeout=10)


if __name__ == "__main__":
    main()
