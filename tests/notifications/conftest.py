"""Fixtures of the notifications tests: its schema migrated on the test database, its app.

The notifications service is not in the launcher's registry yet, so the test
database's session setup does not migrate it; this conftest does (as the
admin role) and drops the schema afterwards. The broker fixtures are those of
``tests/events``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from shopkit.config import Settings
from shopkit.migrations import upgrade
from tests.events.conftest import broker, valkey  # noqa: F401 (fixtures)


@pytest.fixture(scope="session")
def notifications_schema(database_url: str, db_engine: Engine) -> Iterator[None]:
    """The ``notifications`` schema, migrated for the session."""
    upgrade("notifications_service", database_url)
    yield
    with db_engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS notifications CASCADE"))


@pytest.fixture
def clean_notifications(notifications_schema: None, db_engine: Engine) -> None:
    """Empty notifications and inbox."""
    with db_engine.begin() as conn:
        conn.execute(text("TRUNCATE notifications.notifications, notifications.inbox"))


@pytest.fixture(scope="session")
def notifications_app(
    notifications_schema: None, make_settings: Callable[..., Settings], key_resolver: object
) -> Flask:
    """The notifications app on the test database."""
    from notifications_service import create_app

    return create_app(
        {"SETTINGS": make_settings("notifications"), "KEY_RESOLVER": key_resolver, "TESTING": True}
    )


@pytest.fixture
def notifications(notifications_app: Flask, clean_notifications: None) -> FlaskClient:
    """A test client of the notifications app, with empty tables."""
    return notifications_app.test_client()
