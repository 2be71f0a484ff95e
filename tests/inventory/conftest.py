"""Fixtures of the inventory tests: the app, a client, tokens and direct database reads."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from shopkit.config import Settings
from tests.support.identity import Identity, bearer
from tests.support.inventory import InProcessCustomers, Wallets
from tests.support.products import create_product


@pytest.fixture(scope="session")
def customers_boundary(customers_app: Flask) -> InProcessCustomers:
    """What the inventory app's payments client talks to in unit tests."""
    return InProcessCustomers(customers_app)


@pytest.fixture(scope="session")
def inventory_app(
    make_settings: Callable[..., Settings],
    key_resolver: Any,
    customers_boundary: InProcessCustomers,
) -> Flask:
    """The inventory service app on the test database, verifying tokens of the customers app.

    It asks the in-process customers app whether a sale was paid or refunded.
    """
    from inventory_service import create_app
    from inventory_service.clients import PaymentsClient

    return create_app(
        {
            "SETTINGS": make_settings("inventory"),
            "KEY_RESOLVER": key_resolver,
            "INVENTORY_PAYMENTS": PaymentsClient(customers_boundary),
            "TESTING": True,
        }
    )


@pytest.fixture
def wallets(identity: Identity) -> Wallets:
    """Pays and refunds sales in the customers service."""
    return Wallets(identity)


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


@pytest.fixture
def stocks(db_engine: Engine) -> Callable[[list[int]], list[int]]:
    """The stock of each product, read straight from the database."""

    def read(product_ids: list[int]) -> list[int]:
        with db_engine.connect() as conn:
            rows = dict(
                conn.execute(
                    text("SELECT id, stock FROM inventory.products WHERE id = ANY(:ids)"),
                    {"ids": product_ids},
                ).all()
            )
        return [rows[product_id] for product_id in product_ids]

    return read


@pytest.fixture
def make_product(inventory: FlaskClient, admin: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """Create a product through the API (as admin) and return its JSON."""

    def make(**overrides: Any) -> dict[str, Any]:
        return create_product(partial(inventory.post, "/products"), admin, **overrides)  # type: ignore[no-any-return]

    return make
