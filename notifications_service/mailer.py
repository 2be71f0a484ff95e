"""The mail sender: sends the recorded mails over SMTP, marks them sent, retries the others.

A mail is recorded with its notification, in the consumer's transaction
(:func:`notifications_service.notifications.apply_events`); only then is it
sent. :func:`send_due` takes the unsettled mails that are due, locked with
``SKIP LOCKED`` so that several workers never send the same one at once, and
looks up the customer's contact (:mod:`notifications_service.contacts`):

- known and active: the mail goes to the contact's address, to the customer by
  name, over one SMTP connection (``smtplib`` with a timeout: nothing waits
  forever), and is marked sent in its own commit;
- deactivated: the mail is marked skipped (``skipped_at``, ``skip_reason``), never sent;
- not known yet (its customer event is not applied yet): the mail waits. It is due
  again after the same growing back-off as a failure, counted in ``contact_waits``
  and not in ``attempts`` (waiting is no failure), and at once when the contact
  arrives (:func:`notifications_service.contacts.wake`). It is never sent to a
  made-up address. The contact is read once more right before the mail waits
  (:func:`addressee`): a contact's arrival does not wake a mail a sender holds.

A mail that fails is retried later with a growing back-off. Should the process
die between sending and marking, the mail is sent again with the same
``Message-ID`` (derived from the event id), by which the receiving side
recognises the duplicate. Addresses and names are never logged: errors are
logged and stored with any address in them replaced (:func:`describe_error`).
"""

from __future__ import annotations

import logging
import re
import smtplib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.charset import QP, Charset
from email.headerregistry import Address
from email.message import Message
from email.utils import formataddr
from urllib.parse import unquote, urlsplit

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from notifications_service.models import MAX_ERROR_LENGTH, Contact, Mail

log = logging.getLogger(__name__)

#: Seconds of one SMTP connect or reply before the attempt counts as failed.
SMTP_TIMEOUT_S = 10.0
#: The most mails one pass sends.
BATCH = 50
#: Back-off of a failed mail: the first retry after this many seconds, doubling, at most the cap.
RETRY_BASE_S = 2.0
RETRY_MAX_S = 300.0
#: Why a mail was skipped.
SKIPPED_DEACTIVATED = "customer deactivated"
_ADDRESS = re.compile(r"[^\s<>()\[\]{}'\",:;]+@[^\s<>()\[\]{}'\",:;]+")


@dataclass(frozen=True)
class SmtpTarget:
    """Where to send: ``smtp://[user:password@]host:port`` (``smtps://`` for implicit TLS)."""

    host: str
    port: int
    tls: bool = False
    username: str = ""
    password: str = ""

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        """Parse ``SMTP_URL`` (``ValueError`` on another scheme or no host)."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL must look like smtp://host:port or smtps://host:port")
        tls = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if tls else 25),
            tls=tls,
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
        )

    def connect(self, timeout_s: float = SMTP_TIMEOUT_S) -> smtplib.SMTP:
        """An open, logged-in SMTP connection (every step bounded by ``timeout_s``)."""
        client_class = smtplib.SMTP_SSL if self.tls else smtplib.SMTP
        client = client_class(self.host, self.port, timeout=timeout_s)
        if self.username:
            client.login(self.username, self.password)
        return client


#: Mail bodies: UTF-8, quoted-printable (readable as it is when the text is mostly ASCII).
_BODY_CHARSET = Charset("utf-8")
_BODY_CHARSET.body_encoding = QP


def build_message(mail: Mail, contact: Contact, sender: str) -> Message:
    """The mail as sent to ``contact``: by name, its fixed ``Message-ID``, the notification's
    title and text (an error if the contact's address cannot be written in a header).

    A plain ``email.message.Message`` rather than an ``EmailMessage``: the latter parses
    every header it is given and folds it again when sent, and its header registry makes
    a new class for each header, which was about a third of the sender's CPU per mail
    (bench/README.md). ``Address`` still checks the address; ``formataddr`` quotes the
    name, and the generator encodes what is not ASCII (RFC 2047) when the mail is sent.
    """
    assert contact.email is not None, "only a known contact is mailed"
    # A name is free text: its line breaks (which no header may hold) become spaces.
    name = " ".join((contact.full_name or "").split())
    address = Address(display_name=name, addr_spec=contact.email)  # raises for a bad address
    message = Message()
    message["From"] = sender
    message["To"] = formataddr((name, address.addr_spec))
    message["Subject"] = mail.subject
    message["Message-ID"] = mail.message_id
    message["Date"] = mail.created_at.strftime("%a, %d %b %Y %H:%M:%S %z")
    message.set_payload(f"Hello {name},\n\n{mail.body}\n" if name else mail.body, _BODY_CHARSET)
    return message


def describe_error(error: Exception) -> str:
    """``error`` as stored on the mail and logged, any mail address in it replaced."""
    text = _ADDRESS.sub("<address>", f"{type(error).__name__}: {error}")
    return text[:MAX_ERROR_LENGTH]


def retry_delay(attempts: int) -> timedelta:
    """How long a mail that failed ``attempts`` times waits before the next try."""
    return timedelta(seconds=min(RETRY_MAX_S, RETRY_BASE_S * 2 ** max(0, attempts - 1)))


#: The oldest unsettled due mail, locked (others skip it), with its customer's contact if known
#: (read, not locked). Built once: the sender asks it for every mail, and building it was
#: about a tenth of the sender's CPU.
_NEXT_DUE = (
    select(Mail, Contact)
    .outerjoin(Contact, Contact.customer_id == Mail.customer_id)
    .where(Mail.sent_at.is_(None), Mail.skipped_at.is_(None), Mail.next_attempt_at <= func.now())
    .order_by(Mail.next_attempt_at, Mail.id)
    .limit(1)
    .with_for_update(of=Mail, skip_locked=True)
)


def _next_due(session: Session) -> tuple[Mail, Contact | None] | None:
    """The oldest unsettled due mail, locked for this transaction, and its contact if known."""
    row = session.execute(_NEXT_DUE).one_or_none()
    return None if row is None else (row[0], row[1])


def _fail(mail: Mail, error: Exception) -> None:
    """Count a failed try on ``mail`` and schedule the next one after the back-off."""
    mail.attempts += 1
    mail.last_error = describe_error(error)
    mail.next_attempt_at = datetime.now(UTC) + retry_delay(mail.attempts)
    log.warning("mail %s not sent (attempt %s): %s", mail.id, mail.attempts, mail.last_error)


def _current_contact(session: Session, customer_id: int) -> Contact | None:
    """The customer's contact as committed now, not as this session loaded it before."""
    return session.execute(
        select(Contact)
        .where(Contact.customer_id == customer_id)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def addressee(session: Session, mail: Mail, contact: Contact | None) -> Contact | None:
    """The contact to send ``mail`` to, or ``None`` once the mail is skipped (its customer is
    deactivated) or made to wait (its contact is unknown).

    ``contact`` is what the sender read with the mail. Before the mail waits, the contact
    is read again: one committed since then woke none of the mails this sender holds
    (:func:`notifications_service.contacts.wake` skips them), so the mail would wait out
    its back-off for nothing.
    """
    if contact is None or contact.email is None:
        contact = _current_contact(session, mail.customer_id)
    now = datetime.now(UTC)
    if contact is not None and not contact.active:
        mail.skipped_at = now
        mail.skip_reason = SKIPPED_DEACTIVATED
        log.info("mail %s skipped: customer %s is deactivated", mail.id, mail.customer_id)
        return None
    if contact is None or contact.email is None:
        mail.contact_waits += 1
        mail.next_attempt_at = now + retry_delay(mail.contact_waits)
        log.info("mail %s waits for customer %s's contact", mail.id, mail.customer_id)
        return None
    return contact


#: A sent mail's marking: one Core ``UPDATE`` of the row the sender holds locked (the ORM's
#: flush of the changed object was about a fifth of the sender's CPU per mail), built once.
_MARK_SENT = (
    update(Mail.__table__)
    .where(Mail.__table__.c.id == bindparam("mail_id"))
    .values(recipient=bindparam("to"), sent_at=bindparam("at"))
)


def _mark_sent(session: Session, mail: Mail, recipient: str) -> None:
    """Record ``mail`` as sent to ``recipient``, now."""
    session.execute(_MARK_SENT, {"mail_id": mail.id, "to": recipient, "at": datetime.now(UTC)})


def send_due(
    sessions: Callable[[], Session],
    target: SmtpTarget,
    sender: str,
    *,
    limit: int = BATCH,
    timeout_s: float = SMTP_TIMEOUT_S,
) -> int:
    """Send up to ``limit`` due mails (skipping or deferring those it must); how many were sent.

    Each mail is locked, settled and marked in one short transaction of its own. A
    failure of the server (down, refusing, too slow) is recorded on the mail with its
    next due time, and ends the pass: the next one tries again. A mail that cannot be
    written (its address is not one a header can hold) counts a failure too, and the
    pass goes on.
    """
    sent = 0
    handled = 0
    client: smtplib.SMTP | None = None
    try:
        while handled < limit:
            with sessions() as session, session.begin():
                due = _next_due(session)
                if due is None:
                    break
                handled += 1
                mail, contact = due
                contact = addressee(session, mail, contact)
                if contact is None:
                    continue
                assert contact.email is not None
                try:
                    message = build_message(mail, contact, sender)
                # The stdlib's address parser raises ValueError, IndexError or
                # HeaderParseError for an address it cannot write: this mail's problem only.
                except Exception as exc:
                    _fail(mail, exc)
                    continue
                try:
                    if client is None:
                        client = target.connect(timeout_s)
                    client.send_message(message)
                except (OSError, smtplib.SMTPException) as exc:
                    _fail(mail, exc)
                    if client is not None:  # a broken connection is not reused
                        client.close()
                        client = None
                    break
                _mark_sent(session, mail, contact.email)
                sent += 1
    finally:
        if client is not None:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()
    return sent


def run(
    sessions: Callable[[], Session],
    target: SmtpTarget,
    sender: str,
    stop: threading.Event,
    *,
    interval_s: float = 0.5,
) -> None:
    """Send due mails every ``interval_s`` (at once again after a full batch) until ``stop``."""
    while not stop.is_set():
        try:
            sent = send_due(sessions, target, sender)
        except Exception:  # a database hiccup: log it, keep the loop alive
            log.exception("the mail sender's pass failed")
            sent = 0
        if sent < BATCH:
            stop.wait(interval_s)
