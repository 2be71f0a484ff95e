"""Fixtures shared by every test: the real test database, settings and the customers app.

The database is a real PostgreSQL: ``TEST_DATABASE_URL`` if set (a fresh
database is created on that server), otherwise the embedded one in a
temporary directory. It is started, and every service's migrations applied,
once per session, and only when a test needs it; each test that uses it
starts from empty tables. Helpers and factories live in ``tests/support``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, text

from shopkit.config import Settings
from shopkit.registry import SERVICE_NAMES
from tests.support.database import (
    SCHEMAS,
    empty_service_tables,
    fresh_database,
    server_url,
    service_role_url,
)
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, SERVICE_SECRET, Identity
from tests.support.ports import use_worker_block

#: Fixtures every test directory may request: the real broker (``broker``, ``valkey``);
#: and how ``make test`` hands the test files to its xdist workers.
pytest_plugins = ("tests.support.broker", "tests.support.scheduling")


def pytest_configure(config: pytest.Config) -> None:
    """On an xdist worker, pick ports from that worker's own block (tests.support.ports)."""
    if hasattr(config, "workerinput"):
        use_worker_block(config.workerinput["workerid"])


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """URL of this session's migrated test database."""
    with (
        server_url(os.environ.get("TEST_DATABASE_URL")) as admin_url,
        fresh_database(admin_url) as url,
    ):
        yield url


@pytest.fixture(scope="session")
def make_settings(database_url: str) -> Callable[..., Settings]:
    """Settings for a service under test (real database, cheap-but-real password hashing)."""

    def factory(service: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            # A service connects as its own role, which reaches its own schema only.
            "database_url": service_role_url(database_url, service)
            if service in SERVICE_NAMES
            else database_url,
            "admin_username": ADMIN_USERNAME,
            "admin_password": ADMIN_PASSWORD,
            "service_client_secret": SERVICE_SECRET,
            "password_hash_time_cost": 1,
            "password_hash_memory_kib": 8192,
            "log_level": "WARNING",
            **overrides,
        }
        return Settings.from_env(service, **values)

    return factory


@pytest.fixture
def clean_tables(database_url: str) -> None:
    """Empty service tables (migrations and signing keys kept)."""
    empty_service_tables(database_url, SCHEMAS)


@pytest.fixture(autouse=True)
def fresh_tables_if_used(request: pytest.FixtureRequest) -> None:
    """A test that reaches the database starts with empty tables and the bootstrap admin.

    Only those: a test whose fixtures do not lead to ``database_url`` starts no
    PostgreSQL and empties nothing.
    """
    if "database_url" in request.fixturenames:
        request.getfixturevalue("bootstrap_admin")


@pytest.fixture(scope="session")
def db_engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test database, to check what was (not) written."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def count_rows(db_engine: Engine) -> Callable[[str], int]:
    """``count_rows("inventory.products")``: rows in a ``schema.table`` right now.

    A package may override it with one that takes bare table names of its schema
    (see ``tests/inventory/conftest.py``).
    """
    quote = db_engine.dialect.identifier_preparer.quote

    def count(qualified: str) -> int:
        schema, dot, table = qualified.partition(".")
        if not (schema and dot and table) or "." in table:
            raise ValueError(f"expected 'schema.table', got {qualified!r}")
        with db_engine.connect() as conn:
            sql = f"SELECT count(*) FROM {quote(schema)}.{quote(table)}"
            return int(conn.execute(text(sql)).scalar_one())

    return count


@pytest.fixture(scope="session")
def customers_app(make_settings: Callable[..., Settings]) -> Flask:
    """The customers service app on the test database."""
    from customers_service import create_app

    app = create_app({"SETTINGS": make_settings("customers"), "TESTING": True})
    return app


@pytest.fixture
def bootstrap_admin(clean_tables: None, customers_app: Flask) -> None:
    """Recreate the bootstrap admin after the tables were emptied (and forget old blocks)."""
    from customers_service import bootstrap
    from customers_service.throttle import forget_known_blocks

    forget_known_blocks()
    bootstrap(customers_app)


@pytest.fixture
def customers(customers_app: Flask) -> FlaskClient:
    """A test client of the customers app."""
    return customers_app.test_client()


@pytest.fixture
def identity(customers: FlaskClient) -> Identity:
    """Registers customers and issues tokens."""
    return Identity(customers)


@pytest.fixture(scope="session")
def key_resolver(customers_app: Flask) -> Any:
    """Verifies tokens against the customers app's keys (stands in for fetching its JWKS).

    Give it to another service's ``create_app`` in unit tests:
    ``create_app({"SETTINGS": ..., "KEY_RESOLVER": key_resolver})``.
    """
    return customers_app.extensions["customers_keys"]


@pytest.fixture(scope="session")
def live_stack(database_url: str) -> Iterator[Any]:
    """Real gunicorn processes of the services on free ports (started on demand, per session),
    with a real broker as ``EVENTS_URL``, as ``make run`` has: the outboxes are relayed and
    reviews learns purchases from order events; the storefront connects as its broker user."""
    from tests.support.database import broker
    from tests.support.live import LiveStack, relaying

    with broker.throwaway_broker(prefix="shop-test-valkey-") as running:
        stack = LiveStack(
            database_url,
            (ADMIN_USERNAME, ADMIN_PASSWORD),
            SERVICE_SECRET,
            events_url=running.url,
            storefront_events_url=running.storefront_url,
        )
        try:
            with relaying(stack):
                yield stack
        finally:
            stack.close()


@pytest.fixture(autouse=True)
def _sole_relay(request: pytest.FixtureRequest) -> None:
    """Under ``@pytest.mark.sole_relay(*services)``: the live stacks' processes of those
    services are stopped first (:func:`tests.support.live.stop_live_relays`)."""
    marker = request.node.get_closest_marker("sole_relay")
    if marker is not None:
        from tests.support.live import stop_live_relays

        for service in marker.args:
            stop_live_relays(service)


#: How many of the fault suite's findings (tests.resilience.harness.FINDINGS) the reports
#: already carry.
NOTED = pytest.StashKey[int]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach what the test noted to its report: the summary gets it from every xdist worker."""
    from tests.resilience.harness import FINDINGS

    report = yield
    if call.when == "call":
        noted = item.session.stash.setdefault(NOTED, 0)
        report.user_properties.extend(("fault finding", line) for line in FINDINGS[noted:])
        item.session.stash[NOTED] = len(FINDINGS)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print each fault's worst latency and audit result (from every worker's reports)."""
    lines = [
        value
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        for name, value in report.user_properties
        if name == "fault finding"
    ]
    if lines:
        terminalreporter.section("fault suite: worst latency and audit per fault")
        for line in lines:
            terminalreporter.write_line(line)
