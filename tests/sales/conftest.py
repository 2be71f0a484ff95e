"""Sales tests run the saga for real: customers and inventory are gunicorn processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shopkit.config import Settings
from shopkit.db import Database
from tests.support.database import service_role_url
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, SERVICE_SECRET, Identity
from tests.support.live import LiveStack
from tests.support.sales import Shop


@pytest.fixture
def sales_deps(live_stack: Any) -> Any:
    """Customers and inventory running as real processes (started once, again if they were
    stopped: :func:`tests.support.live.stop_live_relays`)."""
    live_stack.start("customers")
    live_stack.start("inventory")
    return live_stack


@pytest.fixture(scope="session")
def sales_app(live_stack: Any, make_settings: Callable[..., Settings], key_resolver: Any) -> Flask:
    """The sales app in-process, calling the live customers and inventory over HTTP (its
    tests get them running through :func:`sales`)."""
    from sales_service import create_app

    settings = make_settings(
        "sales",
        customers_url=live_stack.url("customers"),
        inventory_url=live_stack.url("inventory"),
        http_connect_timeout_s=1.0,
    )
    return create_app(
        {
            "SETTINGS": settings,
            "KEY_RESOLVER": key_resolver,
            "SALES_RECOVERY": False,
            "TESTING": True,
        }
    )


@pytest.fixture
def sales(sales_app: Flask, sales_deps: Any) -> FlaskClient:
    """A test client of the sales app.

    The app lives for the session while each test empties the tables (ids start again
    at 1): its list of deactivated accounts starts empty for each test, or an account
    an earlier test deactivated would lock out this test's customer with the same id.
    """
    sales_app.extensions["shop_auth"].deactivated.assume(frozenset())
    return sales_app.test_client()


@pytest.fixture
def shop(sales_deps: Any, identity: Identity) -> Shop:
    """Arranges products and buyers."""
    return Shop(sales_deps, identity)


@pytest.fixture(scope="module")
def fault_processes(database_url: str) -> Iterator[LiveStack]:
    """A private set of processes on their own ports for one test module, so killing them
    harms no other module's tests."""
    stack = LiveStack(database_url, (ADMIN_USERNAME, ADMIN_PASSWORD), SERVICE_SECRET)
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def fault_stack(fault_processes: LiveStack, identity: Identity) -> Iterator[LiveStack]:
    """The module's private processes, for a test that kills, crashes or slows them.

    Customers and inventory run from one test to the next (a test that killed one has it
    started again by its next :meth:`LiveStack.start`); sales is stopped after each test,
    because each test starts it with settings of its own (workers, batching, crash points).
    """
    try:
        yield fault_processes
    finally:
        fault_processes.stop("sales")


@pytest.fixture
def sales_db(database_url: str) -> Iterator[Database]:
    """The sales service's database, as the sales process opens it."""
    database = Database(service_role_url(database_url, "sales"), application_name="test")
    yield database
    database.dispose()
