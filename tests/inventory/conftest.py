"""Fixtures of the inventory tests: the app, a client, tokens and direct database reads."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from shopkit.config import Settings
from shopkit.service_client import ServiceResponse
from tests.conftest import SERVICE_SECRET, Identity, bearer


class InProcessCustomers:
    """Inventory's HTTP boundary to customers, answered by the in-process customers app.

    It stands where :class:`~shopkit.service_client.ServiceClient` would send
    the request, with a service token of inventory's own, so the payments
    check runs against the real customers endpoint and ledger.
    """

    def __init__(self, customers_app: Flask) -> None:
        self.customers_app = customers_app
        self.calls = 0

    def get(self, path: str, **_kwargs: Any) -> ServiceResponse:
        """``GET path`` on the customers app as the inventory service."""
        self.calls += 1
        client = self.customers_app.test_client()
        token = client.post(
            "/auth/service-token", json={"client_id": "inventory", "client_secret": SERVICE_SECRET}
        ).get_json()["access_token"]
        response = client.get(path, headers=bearer(token))
        return ServiceResponse(response.status_code, response.get_json(silent=True) or {})


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


class Wallets:
    """Debits and refunds sales through the customers app, as the sales service does."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.headers = bearer(identity.service_token("sales"))
        self.customer_id: int | None = None
        self.debits: dict[str, Decimal] = {}

    def _buyer(self) -> int:
        if self.customer_id is None:
            profile, token = self.identity.new_customer()
            charged = self.identity.client.post(
                f"/customers/{profile['username']}/wallet/charge",
                json={"amount": "100000.00"},
                headers=bearer(token),
            )
            assert charged.status_code == 200, charged.get_json()
            self.customer_id = int(profile["id"])
        return self.customer_id

    def _move(self, path: str, sale_id: str, amount: Decimal, step: str) -> None:
        response = self.identity.client.post(
            path,
            json={"customer_id": self._buyer(), "amount": str(amount), "sale_id": sale_id},
            headers={**self.headers, "Idempotency-Key": f"{sale_id}:{step}"},
        )
        assert response.status_code == 201, response.get_json()

    def debit(self, sale_id: str, amount: str = "10.00") -> None:
        """Debit the sale (it is then paid)."""
        self.debits[sale_id] = Decimal(amount)
        self._move("/internal/wallet-debits", sale_id, Decimal(amount), "debit")

    def refund(self, sale_id: str) -> None:
        """Refund the sale's debit."""
        self._move("/internal/wallet-credits", sale_id, self.debits[sale_id], "refund")


@pytest.fixture
def wallets(identity: Identity) -> Wallets:
    """Pays and refunds sales in the customers service."""
    return Wallets(identity)


def new_sale_id() -> str:
    """A fresh sale id."""
    return str(uuid.uuid4())


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
