"""One mail per order event, over real SMTP (aiosmtpd), exactly once across redeliveries.

The consumer records each mail with its notification; the sender sends it, marks it
sent, retries it while the mail server is away, and a resend after a crash carries
the same ``Message-ID``, by which the sink spots it.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import OperationalError

from devstack import mailsink
from notifications_service import mailer
from notifications_service.models import Mail
from notifications_service.notifications import STREAMS, message_id_for
from notifications_service.worker import build_consumer, make_sessions
from tests.support.database import free_port
from tests.support.events import publish
from tests.support.notifications import SENDER, consume_until, customer_event, mails


def test_each_order_event_sends_one_mail_even_when_delivered_twice(
    valkey, broker, database_url, db_engine, sessions, sink
) -> None:
    order_id = str(uuid.uuid4())
    customer_event(valkey, 5, full_name="Ada Lovelace", email="ada@example.com")
    shipped = publish(valkey, "shop.order.shipped.v1", {"order_id": order_id, "customer_id": 5, "carrier": "DHL", "tracking_number": "T9"})  # fmt: skip
    publish(valkey, "shop.wallet.debited.v1", {"customer_id": 5, "amount": "3.00", "balance": "1.00", "order_id": order_id})  # fmt: skip
    [(_, fields)] = valkey.xrange(STREAMS[0], count=1)
    valkey.xadd(STREAMS[0], fields)  # the order event delivered a second time
    consumer = build_consumer(database_url, broker.url)
    consume_until(consumer, valkey, lambda: len(mails(db_engine)) >= 1)

    [mail] = mails(db_engine)  # a wallet event makes a notification, but no mail
    assert str(mail.event_id) == shipped and mail.sent_at is None
    assert mail.message_id == message_id_for(shipped)
    target = mailer.SmtpTarget.from_url(sink.url)
    assert mailer.send_due(sessions, target, SENDER) == 1
    assert mailer.send_due(sessions, target, SENDER) == 0  # nothing left to send

    [received] = sink.mails()
    assert received.message_id == f"<{shipped}@notifications.shop>"
    assert received.subject == "Order shipped" and "tracking number T9" in received.body
    assert received.recipient == "Ada Lovelace <ada@example.com>" and received.sender == SENDER
    assert received.body.startswith("Hello Ada Lovelace,")
    [mail] = mails(db_engine)
    assert mail.sent_at is not None and mail.attempts == 0
    assert mail.recipient == "ada@example.com"


def _record_one(valkey, broker, database_url, db_engine) -> str:
    customer_event(valkey, 8)
    event_id = publish(valkey, "shop.order.delivered.v1", {"order_id": str(uuid.uuid4()), "customer_id": 8})  # fmt: skip
    consume_until(
        build_consumer(database_url, broker.url), valkey, lambda: len(mails(db_engine)) == 1
    )
    return event_id


def test_a_mail_the_server_did_not_take_is_retried_later_and_sent_once(
    valkey, broker, database_url, db_engine, sessions, tmp_path
) -> None:
    event_id = _record_one(valkey, broker, database_url, db_engine)
    port = free_port()  # nothing listens there yet
    target = mailer.SmtpTarget.from_url(f"smtp://127.0.0.1:{port}")
    assert mailer.send_due(sessions, target, SENDER) == 0
    [mail] = mails(db_engine)
    assert mail.sent_at is None and mail.attempts == 1 and "Connection" in (mail.last_error or "")
    # Not due yet: the back-off holds it back.
    sink = mailsink.start(tmp_path / "mail", port)
    try:
        assert mailer.send_due(sessions, target, SENDER) == 0
        with sessions.begin() as session:
            session.execute(update(Mail).values(next_attempt_at=Mail.created_at))
        assert mailer.send_due(sessions, target, SENDER) == 1
        assert [m.message_id for m in sink.mails()] == [message_id_for(event_id)]
        assert sink.mails()[0].recipient == "Customer 8 <c8@example.com>"
        assert mailer.send_due(sessions, target, SENDER) == 0
    finally:
        sink.stop()


def test_a_resend_after_a_crash_before_marking_carries_the_same_message_id(
    valkey, broker, database_url, db_engine, sessions, sink
) -> None:
    event_id = _record_one(valkey, broker, database_url, db_engine)
    target = mailer.SmtpTarget.from_url(sink.url)
    assert mailer.send_due(sessions, target, SENDER) == 1
    # The process died after the server took the mail, before the mark committed.
    with sessions.begin() as session:
        session.execute(update(Mail).values(sent_at=None))
    assert mailer.send_due(sessions, target, SENDER) == 1
    assert mailsink.duplicates(sink.directory) == {message_id_for(event_id): 2}


def test_a_mail_server_that_never_answers_costs_one_bounded_attempt(
    valkey, broker, database_url, db_engine, sessions
) -> None:
    _record_one(valkey, broker, database_url, db_engine)
    with socket.socket() as silent:  # accepts connections (the backlog), never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        target = mailer.SmtpTarget.from_url(f"smtp://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        assert mailer.send_due(sessions, target, SENDER, timeout_s=0.5) == 0
        assert time.monotonic() - started < 5
    [mail] = mails(db_engine)
    assert mail.sent_at is None and mail.attempts == 1 and "timed out" in (mail.last_error or "")


def test_the_workers_database_calls_are_bounded_when_the_server_never_answers() -> None:
    """The worker's sessions (its consumer's and its mail sender's) give up on a database
    that takes the connection and never answers, instead of holding the loop forever."""
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        sessions = make_sessions(
            f"postgresql+psycopg2://shop@127.0.0.1:{silent.getsockname()[1]}/shop"
        )
        outcome: list[BaseException | None] = []

        def query() -> None:
            try:
                with sessions() as session:
                    session.execute(text("SELECT 1"))
                outcome.append(None)
            except BaseException as error:  # what ended the call is the result
                outcome.append(error)

        started = time.monotonic()
        caller = threading.Thread(target=query, daemon=True)  # a hang must not hold the test
        caller.start()
        caller.join(timeout=15)
        assert outcome, "the call was still waiting after 15 s"
        assert isinstance(outcome[0], OperationalError), outcome
        assert time.monotonic() - started < 10


def test_two_senders_at_once_send_each_mail_once(
    valkey, broker, database_url, db_engine, sessions, sink
) -> None:
    customer_event(valkey, 9)
    for _ in range(6):
        publish(
            valkey, "shop.order.delivered.v1", {"order_id": str(uuid.uuid4()), "customer_id": 9}
        )
    consume_until(
        build_consumer(database_url, broker.url), valkey, lambda: len(mails(db_engine)) == 6
    )
    target = mailer.SmtpTarget.from_url(sink.url)
    with ThreadPoolExecutor(2) as pool:
        sent = list(pool.map(lambda _: mailer.send_due(sessions, target, SENDER), range(2)))
    assert sum(sent) == 6
    assert len(sink.mails()) == 6 and mailsink.duplicates(sink.directory) == {}


@pytest.mark.parametrize("url", ["http://mail:25", "smtp://", "mail:25"])
def test_an_smtp_url_of_another_kind_is_refused_clearly(url: str) -> None:
    with pytest.raises(ValueError, match="SMTP_URL"):
        mailer.SmtpTarget.from_url(url)


def test_the_sender_reads_the_next_due_mail_off_its_index_however_long_the_backlog(
    db_engine,
) -> None:
    """A backlog of unsent mails (after an SMTP outage) is not scanned and sorted whole for
    each mail sent: the queue's index holds the sender's order."""
    with db_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO notifications.mails (event_id, message_id, customer_id, subject, body,"
                " next_attempt_at)"
                " SELECT gen_random_uuid(), '<' || n || '@backlog>', n % 50, 'Order placed', 'x',"
                " now() - n * interval '1 second' FROM generate_series(1, 2000) AS n"
            )
        )
        conn.execute(text("ANALYZE notifications.mails"))
        query = mailer._NEXT_DUE.compile(db_engine, compile_kwargs={"literal_binds": True})
        plan = "\n".join(row[0] for row in conn.execute(text(f"EXPLAIN {query}")))
    assert "Index Scan using ix_mails_unsent on mails" in plan, plan
    assert "Sort" not in plan, plan
