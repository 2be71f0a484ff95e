"""Fixtures shared by every test: the real test database, settings and the customers app.

The database is a real PostgreSQL: ``TEST_DATABASE_URL`` if set (a fresh
database is created on that server), otherwise the embedded one in a
temporary directory. Every service's migrations are applied once per
session; every test starts from empty tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, text

from devstack.roles import service_role_url
from shopkit.config import Settings
from shopkit.registry import SERVICE_NAMES
from tests.support.database import fresh_database, present_packages, server_url, truncate_all

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "test-admin-password"
SERVICE_SECRET = "test-service-secret"
SCHEMAS = list(present_packages())  # each service's schema is named after it


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


@pytest.fixture(autouse=True)
def clean_tables(database_url: str) -> None:
    """Every test starts with empty service tables (migrations and signing keys kept)."""
    truncate_all(database_url, SCHEMAS)


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


@pytest.fixture(autouse=True)
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


def customer_payload(username: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid registration body with a unique username and email."""
    name = username or f"user_{uuid.uuid4().hex[:8]}"
    return {
        "username": name,
        "password": "correct-horse-battery",
        "full_name": "Test Person",
        "email": f"{name}@example.com",
        "age": 30,
        "address": "1 Test Street, Testville",
        "gender": "female",
        "marital_status": "single",
        **overrides,
    }


class Identity:
    """Registers customers and obtains tokens through the customers API."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def register(self, username: str | None = None, **overrides: Any) -> dict[str, Any]:
        """Register a customer; return the profile plus its password."""
        payload = customer_payload(username, **overrides)
        response = self.client.post("/customers", json=payload)
        assert response.status_code == 201, response.get_json()
        return {**response.get_json(), "password": payload["password"]}

    def login(self, username: str, password: str) -> dict[str, Any]:
        """Log in; return the token response."""
        response = self.client.post(
            "/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()  # type: ignore[no-any-return]

    def token(self, username: str, password: str) -> str:
        """An access token for the account."""
        return str(self.login(username, password)["access_token"])

    def admin_token(self) -> str:
        """An access token of the bootstrap admin."""
        return self.token(ADMIN_USERNAME, ADMIN_PASSWORD)

    def service_token(self, client_id: str = "sales") -> str:
        """A ``service`` token for another Shop service."""
        response = self.client.post(
            "/auth/service-token", json={"client_id": client_id, "client_secret": SERVICE_SECRET}
        )
        assert response.status_code == 200, response.get_json()
        return str(response.get_json()["access_token"])

    def new_customer(self, **overrides: Any) -> tuple[dict[str, Any], str]:
        """Register a customer and return ``(profile, access_token)``."""
        profile = self.register(**overrides)
        return profile, self.token(profile["username"], profile["password"])


@pytest.fixture
def identity(customers: FlaskClient) -> Identity:
    """Registers customers and issues tokens."""
    return Identity(customers)


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def key_resolver(customers_app: Flask) -> Any:
    """Verifies tokens against the customers app's keys (stands in for fetching its JWKS).

    Give it to another service's ``create_app`` in unit tests:
    ``create_app({"SETTINGS": ..., "KEY_RESOLVER": key_resolver})``.
    """
    return customers_app.extensions["customers_keys"]


@pytest.fixture(scope="session")
def live_stack(database_url: str) -> Iterator[Any]:
    """Real gunicorn processes of the services on free ports (started on demand, per session)."""
    from tests.support.live import LiveStack

    stack = LiveStack(database_url, (ADMIN_USERNAME, ADMIN_PASSWORD), SERVICE_SECRET)
    try:
        yield stack
    finally:
        stack.stop_all()
