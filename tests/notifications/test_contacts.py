"""Contacts from customer events: kept once and never set back by an older event; mails go to
the customer's own address by name, wait while the contact is unknown, and are skipped for a
deactivated customer. A real broker and consumer group, real PostgreSQL, real SMTP (aiosmtpd).
"""

from __future__ import annotations

import dataclasses
import logging
import smtplib
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from customers_service.models import OUTBOX
from notifications_service import mailer
from notifications_service.contacts import apply_customer_events, fold
from notifications_service.models import Contact, Mail
from notifications_service.notifications import effects_of, message_id_for
from notifications_service.worker import build_consumer
from shopkit.db import DEFAULT_STATEMENT_TIMEOUT_MS, local_statement_timeout
from shopkit.events.envelope import Event
from shopkit.migrations import alembic_config, upgrade
from tests.support.database import scratch_database
from tests.support.events import publish, relay_everything
from tests.support.identity import bearer
from tests.support.notifications import SENDER, consume_until, customer_event, mails, notified

#: This file relays the outbox itself (tests.conftest: no live relay of it meanwhile).
pytestmark = pytest.mark.sole_relay("customers")


def _contacts(db_engine: Engine) -> dict[int, Contact]:
    with Session(db_engine) as session:
        return {c.customer_id: c for c in session.execute(select(Contact)).scalars()}


def _order_event(valkey, customer_id: int) -> str:
    data = {"order_id": str(uuid.uuid4()), "customer_id": customer_id}
    return publish(valkey, "shop.order.delivered.v1", data)


@pytest.fixture
def consume(valkey, broker, database_url, db_engine):
    """``consume(until)``: run the notifications group until ``until()`` and no lag."""
    consumer = build_consumer(database_url, broker.url)

    def run(until=lambda: True) -> None:
        consume_until(consumer, valkey, until)

    return run


def test_the_group_keeps_each_customers_newest_contact(valkey, consume, db_engine) -> None:
    customer_event(valkey, 1, full_name="Ada Lovelace", email="ada@example.com")
    customer_event(valkey, 1, "updated", 2, full_name="Ada King", email="ada@king.example")
    customer_event(valkey, 2, "deactivated", 2)  # its registration comes later (being retried)
    customer_event(valkey, 3, "deactivated", 2)
    customer_event(valkey, 3, "reactivated", 3)
    consume(lambda: len(_contacts(db_engine)) == 3)
    # Delivered late, each older than what is known: none of them sets anything back.
    customer_event(valkey, 1, "updated", 1, full_name="Stale Name", email="stale@example.com")
    customer_event(valkey, 2, "registered", 1, full_name="Bob", email="bob@example.com")
    customer_event(valkey, 3, "deactivated", 2)  # the same sequence again (another event id)
    consume()

    contacts = _contacts(db_engine)
    ada, bob, cy = contacts[1], contacts[2], contacts[3]
    assert (ada.full_name, ada.email, ada.active, ada.profile_sequence) == (
        "Ada King", "ada@king.example", True, 2)  # fmt: skip
    # Bob's profile arrives after his deactivation, and does not reactivate him.
    assert (bob.full_name, bob.email, bob.active, bob.status_sequence) == (
        "Bob", "bob@example.com", False, 2)  # fmt: skip
    assert (cy.email, cy.active, cy.status_sequence) == (None, True, 3)


def _status_event(customer_id: int, name: str, sequence: int) -> Event:
    """A customer event of status ``name`` (``deactivated``, ``reactivated``), as the relay sends it."""
    return Event(
        id=str(uuid.uuid4()),
        source="/customers",
        type=f"shop.customer.{name}.v1",
        subject=str(customer_id),
        time=datetime.now(UTC),
        data={"customer_id": customer_id},
        sequence=sequence,
    )


def test_a_batch_writes_its_contacts_in_customer_order_whatever_the_events_order() -> None:
    # Two workers applying batches about the same customers lock their rows in one order.
    told = fold(
        [
            _status_event(9, "deactivated", 2),
            _status_event(3, "deactivated", 2),
            _status_event(7, "deactivated", 2),
            _status_event(3, "reactivated", 3),
        ]
    )
    assert [(t.customer_id, t.active) for t in told] == [(3, True), (7, False), (9, False)]


def test_a_customer_event_without_a_sequence_cannot_be_ordered_so_it_fails() -> None:
    unordered = dataclasses.replace(_status_event(5, "deactivated", 1), sequence=None)
    with pytest.raises(ValueError, match="has no sequence"):
        fold([_status_event(4, "deactivated", 2), unordered])


def test_a_mail_goes_to_the_customers_own_address_by_name_and_nothing_personal_is_logged(
    valkey, consume, db_engine, sessions, sink, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    target = mailer.SmtpTarget.from_url(sink.url)
    event_id = _order_event(valkey, 11)
    consume(lambda: len(mails(db_engine)) == 1)
    assert mailer.send_due(sessions, target, SENDER) == 0  # waits (and says so) for the contact
    customer_event(valkey, 11, full_name="Grace Hopper", email="Grace@Navy.example")
    consume(lambda: 11 in _contacts(db_engine))
    [mail] = mails(db_engine)
    assert mail.recipient is None  # addressed when sent, from the contact
    assert mailer.send_due(sessions, target, SENDER) == 1

    [received] = sink.mails()
    assert received.recipient == "Grace Hopper <Grace@Navy.example>"
    assert received.message_id == message_id_for(event_id)
    assert received.body.startswith("Hello Grace Hopper,") and "delivered" in received.body
    ours = ("notifications_service", "shopkit")  # the sink (a mail server) logs what it got
    logged = " ".join(r.getMessage() for r in caplog.records if r.name.startswith(ours))
    assert "waits for customer 11" in logged
    assert "Navy.example" not in logged and "Grace" not in logged


def test_a_mail_whose_contact_is_unknown_waits_then_goes_once_it_arrives(
    valkey, consume, db_engine, sessions, sink
) -> None:
    target = mailer.SmtpTarget.from_url(sink.url)
    event_id = _order_event(valkey, 21)  # the order's event comes before the registration's
    consume(lambda: len(mails(db_engine)) == 1)
    assert mailer.send_due(sessions, target, SENDER) == 0
    [mail] = mails(db_engine)
    assert (mail.sent_at, mail.recipient, mail.attempts, mail.contact_waits) == (None, None, 0, 1)
    assert mail.next_attempt_at > datetime.now(UTC)  # not due until the back-off or the contact
    assert mailer.send_due(sessions, target, SENDER) == 0
    assert sink.mails() == []  # never to a made-up address

    customer_event(valkey, 21, full_name="Linus", email="linus@example.com")
    consume(lambda: 21 in _contacts(db_engine))
    [mail] = mails(db_engine)
    assert mail.next_attempt_at <= datetime.now(UTC)  # woken by the contact's arrival
    assert mailer.send_due(sessions, target, SENDER) == 1
    assert mailer.send_due(sessions, target, SENDER) == 0
    [received] = sink.mails()
    assert received.recipient == "Linus <linus@example.com>"
    assert received.message_id == message_id_for(event_id)
    [mail] = mails(db_engine)
    assert mail.sent_at is not None and mail.attempts == 0 and mail.contact_waits == 1


def test_a_deactivated_customer_gets_no_more_mails_they_are_skipped(
    valkey, consume, db_engine, sessions, sink
) -> None:
    target = mailer.SmtpTarget.from_url(sink.url)
    customer_event(valkey, 31)
    _order_event(valkey, 31)
    _order_event(valkey, 32)  # 32's contact is not known yet
    consume(lambda: len(mails(db_engine)) == 2)
    assert mailer.send_due(sessions, target, SENDER) == 1
    customer_event(valkey, 31, "deactivated", 2)
    _order_event(valkey, 31)
    customer_event(valkey, 32, "deactivated", 2)  # its registration is still on its way
    consume(lambda: len(mails(db_engine)) == 3 and len(_contacts(db_engine)) == 2)
    assert mailer.send_due(sessions, target, SENDER) == 0
    assert mailer.send_due(sessions, target, SENDER) == 0

    sent, *skipped = mails(db_engine)
    assert sent.sent_at is not None and sent.skipped_at is None
    assert [(m.customer_id, m.skip_reason, m.sent_at) for m in skipped] == [
        (32, mailer.SKIPPED_DEACTIVATED, None),
        (31, mailer.SKIPPED_DEACTIVATED, None),
    ]
    assert all(m.skipped_at is not None and m.attempts == 0 for m in skipped)
    assert len(sink.mails()) == 1


def test_the_audit_counts_sent_and_skipped_mails_as_settled_and_a_waiting_one_as_unsent(
    valkey, consume, db_engine, sessions, sink
) -> None:
    target = mailer.SmtpTarget.from_url(sink.url)
    customer_event(valkey, 71)
    customer_event(valkey, 72)
    customer_event(valkey, 72, "deactivated", 2)
    sent, skipped, waiting = (_order_event(valkey, customer_id) for customer_id in (71, 72, 73))
    consume(lambda: len(mails(db_engine)) == 3 and len(_contacts(db_engine)) == 2)
    assert mailer.send_due(sessions, target, SENDER) == 1  # 72's is skipped, 73's waits

    with Session(db_engine) as session:
        effects = effects_of(session, [uuid.UUID(e) for e in (sent, skipped, waiting)])
    unsent = {event_id: made["mails_unsent"] for event_id, made in effects.items()}
    assert unsent == {uuid.UUID(sent): 0, uuid.UUID(skipped): 0, uuid.UUID(waiting): 1}
    assert all((made["notifications"], made["mails"]) == (1, 1) for made in effects.values())


def test_an_address_no_header_can_hold_fails_that_mail_only(
    valkey, consume, db_engine, sessions, sink
) -> None:
    target = mailer.SmtpTarget.from_url(sink.url)
    customer_event(valkey, 41, email="not an address@example.com")
    customer_event(valkey, 42)
    _order_event(valkey, 41)
    _order_event(valkey, 42)
    consume(lambda: len(mails(db_engine)) == 2)
    assert mailer.send_due(sessions, target, SENDER) == 1
    bad, good = mails(db_engine)
    assert bad.sent_at is None and bad.attempts == 1 and bad.last_error
    assert "example.com" not in bad.last_error
    assert good.sent_at is not None


def test_a_name_with_line_breaks_is_written_on_one_line_and_adds_no_header(
    valkey, consume, db_engine, sessions, sink
) -> None:
    target = mailer.SmtpTarget.from_url(sink.url)
    customer_event(valkey, 43, full_name="Eve\r\nBcc: mallory@example.com", email="eve@example.com")
    _order_event(valkey, 43)
    consume(lambda: len(mails(db_engine)) == 1)
    assert mailer.send_due(sessions, target, SENDER) == 1
    [received] = sink.mails()
    assert received.recipient == '"Eve Bcc: mallory@example.com" <eve@example.com>'
    assert b"\nBcc:" not in received.path.read_bytes()
    assert received.body.startswith("Hello Eve Bcc: mallory@example.com,")


def test_an_error_naming_an_address_is_kept_and_logged_without_it() -> None:
    refused = smtplib.SMTPRecipientsRefused({"ada@example.com": (550, b"no such user")})
    described = mailer.describe_error(refused)
    assert described.startswith("SMTPRecipientsRefused: ") and "<address>" in described
    assert "ada" not in described and "example.com" not in described


def test_the_migration_keeps_existing_mails_and_goes_back(database_url: str) -> None:
    package = "notifications_service"
    with scratch_database(database_url, "shop_contacts_migration") as url:
        upgrade(package, url, "0002")
        engine = create_engine(url)
        insert_mail = text(
            "INSERT INTO notifications.mails (event_id, message_id, customer_id, recipient,"
            " subject, body) VALUES (gen_random_uuid(), '<m1@notifications.shop>', 7,"
            " 'customer-7@localhost', 'Order delivered', 'Delivered.')"
        )
        with engine.begin() as conn:
            conn.execute(insert_mail)
        upgrade(package, url)
        with engine.begin() as conn:
            row = conn.execute(
                text("SELECT recipient, contact_waits, skipped_at FROM notifications.mails")
            ).one()
            assert tuple(row) == ("customer-7@localhost", 0, None)
            conn.execute(text("UPDATE notifications.mails SET recipient = NULL"))
        command.downgrade(alembic_config(package, url), "0002")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT recipient FROM notifications.mails")).scalar_one() == (
                "customer-7@localhost"
            )
            gone = conn.execute(text("SELECT to_regclass('notifications.contacts')")).scalar()
            assert gone is None
        engine.dispose()


def test_a_registration_reaches_the_contacts_through_the_relay_and_the_broker(
    identity, customers, valkey, consume, db_engine
) -> None:
    ada = identity.register(full_name="Ada Lovelace", email="ada@example.com")
    token = identity.token(ada["username"], ada["password"])
    path = f"/customers/{ada['username']}"
    headers = bearer(token)
    assert (
        customers.patch(path, json={"email": "ada@king.example"}, headers=headers).status_code
        == 200
    )
    relay_everything(db_engine, OUTBOX, valkey, "customers")
    consume(lambda: ada["id"] in _contacts(db_engine))
    contact = _contacts(db_engine)[ada["id"]]
    assert (contact.username, contact.full_name, contact.email, contact.active) == (
        ada["username"], "Ada Lovelace", "ada@king.example", True)  # fmt: skip
    assert contact.profile_sequence == 2


def test_a_contact_arriving_while_the_sender_holds_its_mail_is_found_before_the_mail_waits(
    valkey, consume, db_engine, sessions, sink
) -> None:
    target = mailer.SmtpTarget.from_url(sink.url)
    _order_event(valkey, 51)
    consume(lambda: len(mails(db_engine)) == 1)
    registered = Event(id=str(uuid.uuid4()), source="/customers", type="shop.customer.registered.v1",
                       subject="51", time=datetime.now(UTC), sequence=1,
                       data={"customer_id": 51, "username": "c51", "full_name": "Eve",
                             "email": "eve@example.com"})  # fmt: skip
    with sessions.begin() as sender:  # the sender: holds the mail, has found no contact
        mail = sender.execute(select(Mail).with_for_update()).scalar_one()
        assert sender.get(Contact, 51) is None
        with ThreadPoolExecutor(1) as pool:
            applying = pool.submit(lambda: _apply_in_own_transaction(sessions, [registered]))
            # Its wake-up skips the mail the sender holds: it commits without waiting for it.
            applying.result(timeout=10)
        # About to make the mail wait, the sender reads the contact again, and finds it.
        contact = mailer.addressee(sender, mail, None)
        assert contact is not None and contact.email == "eve@example.com"
    [mail] = mails(db_engine)
    assert mail.contact_waits == 0 and mail.next_attempt_at <= datetime.now(UTC)
    assert mailer.send_due(sessions, target, SENDER) == 1
    [received] = sink.mails()
    assert received.recipient == "Eve <eve@example.com>"


def test_a_customer_event_never_waits_for_a_mail_being_sent_and_the_mail_goes_after(
    valkey, consume, db_engine, sessions, sink
) -> None:
    target = mailer.SmtpTarget.from_url(sink.url)
    customer_event(valkey, 61, full_name="Old Name", email="old@example.com")
    _order_event(valkey, 61)
    consume(lambda: len(mails(db_engine)) == 1 and 61 in _contacts(db_engine))
    with sessions.begin() as sender:  # a sender holds the mail, as during its SMTP exchange
        sender.execute(select(Mail).with_for_update()).scalar_one()
        customer_event(valkey, 61, "updated", 2, full_name="New Name", email="new@example.com")
        publish(valkey, "shop.wallet.debited.v1", {"customer_id": 62, "amount": "3.00",
                                                    "balance": "1.00", "order_id": str(uuid.uuid4())})  # fmt: skip
        # The consumer runs here, while the lock is held: a wake-up waiting for it would
        # time out (the consumer's statement timeout) and the batch would not commit.
        consume(lambda: _contacts(db_engine)[61].email == "new@example.com")
        assert notified(db_engine, 62) == 1  # the batch's unrelated event is applied too
        [mail] = mails(db_engine)
        assert mail.sent_at is None
    assert mailer.send_due(sessions, target, SENDER) == 1
    [received] = sink.mails()
    assert received.recipient == "New Name <new@example.com>"


def _apply_in_own_transaction(sessions: sessionmaker[Session], events: list[Event]) -> None:
    """Apply ``events`` as the consumer does: one transaction, its statement timeout."""
    with sessions.begin() as session:
        local_statement_timeout(session, DEFAULT_STATEMENT_TIMEOUT_MS)
        apply_customer_events(session, events)
