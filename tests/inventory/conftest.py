"""Fixtures of the inventory tests: the app, a client, tokens and direct database reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, text

from shopkit.config import Settings
from tests.conftest import Identity, bearer


@pytest.fixture(scope="session")
def inventory_app(make_settings: Callable[..., Settings], key_resolver: Any) -> Flask:
    """The inventory service app on the test database, verifying tokens of the customers app."""
    from inventory_service import create_app

    return create_app(
        {"SETTINGS": make_settings("inventory"), "KEY_RESOLVER": key_resolver, "TESTING": True}
    )


@pytest.fixture
def inventory(inventory_app: Flask) -> FlaskClient:
    """A test client of the inventory app."""
    return inventory_app.test_client()


@pytest.fixture
def admin(identity: Identity) -> dict[str, str]:
    """Authorization header of the bootstrap admin."""
    return bearer(identity.admin_token())


@pytest.fixture
def service(identity: Identity) -> dict[str, str]:
    """Authorization header of the sales service."""
    return bearer(identity.service_token("sales"))


@pytest.fixture
def customer(identity: Identity) -> dict[str, str]:
    """Authorization header of a freshly registered customer."""
    return bearer(identity.new_customer()[1])


@pytest.fixture(scope="session")
def db_engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test database, to check what was (not) written."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def count_rows(db_engine: Engine) -> Callable[[str], int]:
    """``count_rows("products")``: rows in an inventory table right now."""

    def count(table: str) -> int:
        with db_engine.connect() as conn:
            return int(conn.execute(text(f'SELECT count(*) FROM inventory."{table}"')).scalar_one())

    return count


def product_payload(**overrides: Any) -> dict[str, Any]:
    """A valid product body."""
    return {
        "name": "Espresso beans",
        "category": "food",
        "price": "12.50",
        "description": "Dark roast, 1 kg bag.",
        "stock": 10,
        **overrides,
    }


@pytest.fixture
def make_product(inventory: FlaskClient, admin: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """Create a product through the API (as admin) and return its JSON."""

    def make(**overrides: Any) -> dict[str, Any]:
        response = inventory.post("/products", json=product_payload(**overrides), headers=admin)
        assert response.status_code == 201, response.get_json()
        return response.get_json()  # type: ignore[no-any-return]

    return make
