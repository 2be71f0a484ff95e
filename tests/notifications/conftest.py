"""Fixtures of the notifications tests: its app on the test database, a real mail sink.

The session's test database migrates the notifications schema like every
service's (it is in the registry). The broker fixtures are those of
:mod:`tests.support.broker`; the mail sink is the dev stack's own (:mod:`devstack.mailsink`),
serving in this process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from devstack import mailsink
from shopkit.config import Settings


@pytest.fixture(scope="session")
def notifications_app(make_settings: Callable[..., Settings], key_resolver: object) -> Flask:
    """The notifications app on the test database."""
    from notifications_service import create_app

    return create_app(
        {"SETTINGS": make_settings("notifications"), "KEY_RESOLVER": key_resolver, "TESTING": True}
    )


@pytest.fixture
def notifications(notifications_app: Flask) -> FlaskClient:
    """A test client of the notifications app (its tables emptied by ``clean_tables``)."""
    return notifications_app.test_client()


@pytest.fixture
def sessions(db_engine: Engine) -> sessionmaker[Session]:
    """Sessions on the test database (for the mail sender)."""
    return sessionmaker(db_engine)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[mailsink.MailSink]:
    """A real SMTP sink (aiosmtpd) on a free port, keeping mails under ``tmp_path``."""
    running = mailsink.start(tmp_path / "mail")
    yield running
    running.stop()
