"""Customers' tests' helpers: funded customers, and debits as sales sends them in a batch."""

from __future__ import annotations

import uuid
from typing import Any

from flask.testing import FlaskClient

from tests.support.identity import Identity, bearer

#: The endpoint of a batch of wallet debits.
DEBIT_BATCH = "/internal/wallet-debits/batch"


def debit_item(customer_id: int, amount: str, sale_id: str | None = None) -> dict[str, Any]:
    """One sale's debit as the sales service sends it in a batch."""
    sale = sale_id or str(uuid.uuid4())
    return {
        "idempotency_key": f"{sale}:debit",
        "request": {"customer_id": customer_id, "amount": amount, "sale_id": sale},
    }


def funded(identity: Identity, customers: FlaskClient, amount: str) -> dict[str, Any]:
    """A new customer whose wallet was charged ``amount``; their profile."""
    profile, token = identity.new_customer()
    charged = customers.post(
        f"/customers/{profile['username']}/wallet/charge",
        json={"amount": amount},
        headers=bearer(token),
    )
    assert charged.status_code == 200, charged.get_json()
    return profile
