"""The local mail sink of ``make run``: an SMTP server (aiosmtpd) that keeps every mail as a file.

Nothing leaves the machine: each mail the notifications service sends is
written, as received, to ``<dir>/<n>-<time>.eml`` (``.data/mail`` under
``make run``). :func:`read_mails` lists them and :func:`duplicates` finds the
``Message-ID`` values received more than once (a mail sent again after a crash
between sending and marking it sent). From the shell::

    python -m devstack.mailsink --dir .data/mail            # serve on 127.0.0.1:1025
    python -m devstack.mailsink --dir .data/mail --list     # list the mails kept
"""

from __future__ import annotations

import argparse
import email
import email.policy
import itertools
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

HOST = "127.0.0.1"
DEFAULT_PORT = 1025


@dataclass(frozen=True)
class StoredMail:
    """One mail kept by the sink."""

    path: Path
    message_id: str
    sender: str
    recipient: str
    subject: str
    body: str


class _FileHandler:
    """aiosmtpd handler: every accepted message becomes one ``.eml`` file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        start = len(list(directory.glob("*.eml")))
        self._numbers = itertools.count(start + 1)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's hook name)
        """Write the message as received, then accept it."""
        with self._lock:
            number = next(self._numbers)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.directory / f"{number:06d}-{stamp}.eml"
        partial = target.with_suffix(".part")
        partial.write_bytes(envelope.original_content or envelope.content)
        partial.rename(target)  # whole files only: a reader never sees half a mail
        return "250 Message accepted for delivery"


@dataclass
class MailSink:
    """A running sink: its SMTP controller, address and directory."""

    controller: Controller
    directory: Path

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.controller.port)

    @property
    def url(self) -> str:
        """``SMTP_URL`` for the services."""
        return f"smtp://{HOST}:{self.port}"

    def mails(self) -> list[StoredMail]:
        """The mails kept so far, oldest first."""
        return read_mails(self.directory)

    def stop(self) -> None:
        """Stop serving (the mails stay)."""
        self.controller.stop()


def start(directory: Path, port: int = 0) -> MailSink:
    """Serve SMTP on ``127.0.0.1:port`` (``0``: a free port), keeping mails in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    if port == 0:
        from devstack.processes import free_port  # noqa: PLC0415

        port = free_port()
    controller = Controller(_FileHandler(directory), hostname=HOST, port=port, ready_timeout=10)
    controller.start()
    return MailSink(controller, directory)


def read_mails(directory: Path) -> list[StoredMail]:
    """Every mail kept in ``directory``, oldest first."""
    found = []
    for path in sorted(directory.glob("*.eml")):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        body = parsed.get_body(("plain",))
        found.append(
            StoredMail(
                path=path,
                message_id=str(parsed.get("Message-ID", "")),
                sender=str(parsed.get("From", "")),
                recipient=str(parsed.get("To", "")),
                subject=str(parsed.get("Subject", "")),
                body=body.get_content().strip() if body is not None else "",
            )
        )
    return found


def duplicates(directory: Path) -> dict[str, int]:
    """``Message-ID`` → times received, for those received more than once."""
    counts = Counter(mail.message_id for mail in read_mails(directory))
    return {message_id: n for message_id, n in counts.items() if n > 1}


def main(argv: list[str] | None = None) -> None:
    """``python -m devstack.mailsink``: serve until interrupted, or ``--list`` the mails."""
    parser = argparse.ArgumentParser(description="The local mail sink of make run.")
    parser.add_argument("--dir", type=Path, default=Path(".data") / "mail")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--list", action="store_true", help="list the mails kept, then exit")
    args = parser.parse_args(argv)
    if args.list:
        for mail in read_mails(args.dir):
            print(f"{mail.path.name}  {mail.message_id}  to {mail.recipient}: {mail.subject}")
        for message_id, times in duplicates(args.dir).items():
            print(f"duplicate: {message_id} received {times} times")
        return
    sink = start(args.dir, args.port)
    print(f"SMTP_URL={sink.url}", flush=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    sink.stop()


if __name__ == "__main__":
    main()
