"""The notifications consumer: ``python -m notifications_service.worker``.

Runs the ``notifications`` consumer group on the order and wallet streams
until SIGTERM or SIGINT, against ``DATABASE_URL`` (or the embedded database)
and ``EVENTS_URL``. Several workers may run: they share the group's entries,
and one takes over a dead one's pending entries.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from notifications_service.models import inbox
from notifications_service.notifications import GROUP, STREAMS, apply_events
from shopkit.config import Settings
from shopkit.db import resolve_database_url
from shopkit.events.consumer import Consumer
from shopkit.events.relay import broker_client

log = logging.getLogger(__name__)


def build_consumer(database_url: str, events_url: str) -> Consumer:
    """The group's consumer on ``database_url`` and the broker at ``events_url``."""
    engine = create_engine(database_url, pool_size=2, pool_pre_ping=True)
    return Consumer(
        broker_client(events_url, timeout_s=5.0),
        sessionmaker(engine),
        inbox,
        group=GROUP,
        streams=STREAMS,
        batch_handler=apply_events,
    )


def main() -> None:
    """Consume until told to stop."""
    settings = Settings.from_env("notifications")
    logging.basicConfig(level=settings.log_level)
    events_url = os.environ.get("EVENTS_URL")
    if not events_url:
        raise SystemExit("EVENTS_URL is not set: the notifications worker needs the broker")
    consumer = build_consumer(resolve_database_url(settings), events_url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("notifications consumer %s reading %s", consumer.name, ", ".join(STREAMS))
    consumer.run(stop)


if __name__ == "__main__":
    main()
