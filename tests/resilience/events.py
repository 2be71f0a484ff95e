"""The event fault tests' shop: every service and event part as real processes, and the audit.

:class:`EventStack` is a :class:`~tests.support.live.LiveStack` whose services
get the broker's and the mail sink's addresses, plus the notifications app and
its worker sharing one fault set (so ``/admin/faults`` of notifications reaches
the worker's consumer). :func:`audit_events` checks, straight in the databases,
the broker and the sink, what the events promise: every outbox row published,
every order and wallet event applied once by the notifications group, one mail
per order event, received once.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from typing import Any

from sqlalchemy import create_engine, text

from notifications_service.notifications import GROUP, STREAMS, message_id_for
from tests.support.broker import connected
from tests.support.database import WorkerProcess, mailsink
from tests.support.live import LiveStack
from tests.support.outbox import outbox_rows

#: The services that write an outbox (each runs its relay in its workers).
EMITTERS = ("sales", "customers")
#: How long the outboxes, the consumer and the mail sender get to catch up after a fault.
CATCH_UP_S = 60.0


class EventStack(LiveStack):
    """A live stack with a broker, a mail sink, and notifications' app and worker."""

    def __init__(
        self, database_url: str, admin: tuple[str, str], service_secret: str, events_url: str,
        smtp_url: str,
    ) -> None:  # fmt: skip
        super().__init__(database_url, admin, service_secret)
        self.events_url = events_url
        self.smtp_url = smtp_url
        # Shared by the notifications app and its worker; removed with the logs (close()).
        self.notifications_faults = str(self.log_dir / "notifications-faults")
        self.worker: WorkerProcess | None = None

    def env(self, service: str | None = None) -> dict[str, str]:
        """Every service's environment, with the broker and the mail server."""
        env = {**super().env(service), "EVENTS_URL": self.events_url, "SMTP_URL": self.smtp_url}
        if service == "notifications":
            env["SHOP_FAULTS_DIR"] = self.notifications_faults
        return env

    def start_worker(self) -> WorkerProcess:
        """Start the notifications worker (consumer group and mail sender)."""
        log = (self.log_dir / "notifications-worker.log").open("ab")
        self.worker = WorkerProcess(
            "notifications-worker",
            "notifications_service.worker",
            env={**self.env("notifications"), "LOG_LEVEL": "INFO"},
            log=log,
        ).start()
        return self.worker

    def stop_all(self) -> None:
        """Stop the worker and every service."""
        if self.worker is not None:
            self.worker.stop()
        super().stop_all()


@dataclass
class Events:
    """What the outboxes hold and what the notifications service made of it."""

    #: event id -> type, of every outbox row (order, wallet and customer events).
    emitted: dict[str, str]
    unpublished: int
    #: event id -> how many notifications / inbox rows / mail rows it has.
    notified: Counter[str]
    inboxed: Counter[str]
    mails: Counter[str]
    unsent: int
    #: Message-ID -> how many times the sink received it.
    received: Counter[str]

    @property
    def notifying_events(self) -> set[str]:
        """The events that make a notification: order and wallet events (customer events
        only keep the mails' contacts)."""
        return {
            event_id
            for event_id, kind in self.emitted.items()
            if ".order." in kind or ".wallet." in kind
        }

    @property
    def order_events(self) -> set[str]:
        return {event_id for event_id, kind in self.emitted.items() if ".order." in kind}

    def caught_up(self) -> bool:
        """Everything published, applied and sent (not yet whether exactly once)."""
        return (
            self.unpublished == 0
            and set(self.inboxed) >= set(self.emitted)
            and set(self.mails) >= self.order_events
            and self.unsent == 0
            and sum(self.received.values()) >= len(self.order_events)
        )


def read_events(database_url: str, sink: mailsink.MailSink, *, headers: bool = True) -> Events:
    """The outboxes, the notifications tables and the sink's mails, right now.

    Without ``headers`` the sink's mails are only counted (each as a distinct ``Message-ID``).
    """
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            emitted: dict[str, str] = {}
            unpublished = 0
            for service in EMITTERS:
                for event_id, kind, published_at in conn.execute(
                    text(f"SELECT event_id, type, published_at FROM {service}.outbox")
                ):
                    emitted[str(event_id)] = kind
                    unpublished += published_at is None

            def counted(sql: str) -> Counter[str]:
                return Counter(str(row[0]) for row in conn.execute(text(sql), {"g": GROUP}))

            notified = counted("SELECT event_id FROM notifications.notifications")
            inboxed = counted("SELECT event_id FROM notifications.inbox WHERE consumer_group = :g")
            mails = counted("SELECT event_id FROM notifications.mails")
            unsent = conn.execute(
                text(
                    "SELECT count(*) FROM notifications.mails "
                    "WHERE sent_at IS NULL AND skipped_at IS NULL"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    mails_kept = sorted(sink.directory.glob("*.eml"))
    if headers:  # only the header: parsing whole mails (mailsink.read_mails) takes seconds
        parser = BytesHeaderParser()
        received = Counter(str(parser.parsebytes(path.read_bytes())["Message-ID"])
                           for path in mails_kept)  # fmt: skip
    else:
        received = Counter(path.name for path in mails_kept)
    return Events(emitted, unpublished, notified, inboxed, mails, int(unsent), received)


def audit_events(database_url: str, sink: mailsink.MailSink) -> tuple[Events, str]:
    """Wait until the events caught up, then check each was applied, and mailed, once.

    Returns what was read and a one-line summary for the fault suite's report.
    """
    deadline = time.monotonic() + CATCH_UP_S
    events = read_events(database_url, sink, headers=False)
    while not events.caught_up() and time.monotonic() < deadline:
        time.sleep(0.5)
        events = read_events(database_url, sink, headers=False)
    events = read_events(database_url, sink)
    assert events.unpublished == 0, f"{events.unpublished} outbox rows never published"
    assert events.emitted, "no event was emitted at all"
    missing = set(events.emitted) - set(events.inboxed)
    assert not missing, f"{len(missing)} events never applied by {GROUP}"
    assert set(events.inboxed) == set(events.emitted)
    # One notification per order or wallet event, one mail per order event: none twice.
    assert events.notified == Counter(events.notifying_events), "a notification missing or twice"
    assert events.mails == Counter(events.order_events), "a mail row missing or twice"
    assert events.unsent == 0, f"{events.unsent} mails never sent"
    expected = {message_id_for(event_id) for event_id in events.order_events}
    assert set(events.received) == expected, "the sink did not get one mail per order event"
    twice = {message_id: n for message_id, n in events.received.items() if n > 1}
    assert not twice, f"mails received more than once: {twice}"
    return events, (
        f"events clean: {len(events.emitted)} published, each applied once by {GROUP}, "
        f"{len(events.order_events)} mails, each received once"
    )


def stream_lengths(events_url: str) -> dict[str, int]:
    """How many entries the order and wallet streams hold (republished ones included)."""
    with connected(events_url, timeout_s=5) as client:
        return {stream: int(client.xlen(stream)) for stream in STREAMS}


def unpublished(database_url: str, service: str) -> list[Any]:
    """``service``'s outbox rows not yet published (``attempts`` and ``last_error`` each)."""
    return [row for row in outbox_rows(database_url, service) if row.published_at is None]
