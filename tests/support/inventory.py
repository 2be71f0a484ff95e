"""Inventory's tests' helpers: its boundary to customers, wallets paying sales, sale ids,
reservations as sales sends them, stock."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from shopkit.service_client import ServiceResponse
from tests.support.identity import SERVICE_SECRET, Identity, bearer


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


def new_sale_id() -> str:
    """A fresh sale id."""
    return str(uuid.uuid4())


#: The endpoint of a batch of reservations.
BATCH = "/internal/reservations/batch"


def reserve(
    client: FlaskClient,
    headers: dict[str, str],
    product_id: int,
    quantity: int = 1,
    *,
    sale_id: str | None = None,
    key: str | None = None,
) -> Any:
    """POST a reservation (a fresh sale id and key unless given)."""
    sale = sale_id or str(uuid.uuid4())
    return client.post(
        "/internal/reservations",
        json={"sale_id": sale, "product_id": product_id, "quantity": quantity},
        headers={**headers, "Idempotency-Key": key or f"{sale}:reserve"},
    )


def reserve_items(
    client: FlaskClient,
    headers: dict[str, str],
    items: list[tuple[int, int]],
    *,
    sale_id: str | None = None,
    key: str | None = None,
) -> Any:
    """POST a reservation of ``(product_id, quantity)`` lines (a fresh sale and key unless given)."""
    sale = sale_id or new_sale_id()
    return client.post(
        "/internal/reservations",
        json={"sale_id": sale, "items": [{"product_id": p, "quantity": q} for p, q in items]},
        headers={**headers, "Idempotency-Key": key or f"{sale}:reserve"},
    )


def batch_item(product_id: int, quantity: int = 1, sale_id: str | None = None) -> dict[str, Any]:
    """One sale's reservation as the sales service sends it in a batch."""
    sale = sale_id or str(uuid.uuid4())
    return {
        "idempotency_key": f"{sale}:reserve",
        "request": {"sale_id": sale, "product_id": product_id, "quantity": quantity},
    }


def stock_of(client: FlaskClient, product_id: int, admin: dict[str, str]) -> int:
    """The product's stock as an admin sees it (archived included)."""
    return int(client.get(f"/products/{product_id}", headers=admin).get_json()["stock"])
