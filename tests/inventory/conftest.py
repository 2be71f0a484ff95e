"""Fixtures of the inventory tests: the app, a client, tokens and direct database reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

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


@pytest.fixture
def count_rows(count_rows: Callable[[str], int]) -> Callable[[str], int]:
    """``count_rows("products")``: rows in an inventory-schema table right now.

    Takes bare table names; delegates to the shared ``schema.table`` fixture.
    """

    def count(table: str) -> int:
        return count_rows(f"inventory.{table}")

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
