"""``GET /internal/sale-payments/{sale_id}``: a sale's debit and refund, read from the ledger."""

from __future__ import annotations

import uuid

from flask.testing import FlaskClient

from tests.support.identity import Identity, bearer


def _move(
    customers: FlaskClient, service: dict[str, str], path: str, body: dict[str, object], key: str
) -> None:
    response = customers.post(path, json=body, headers={**service, "Idempotency-Key": key})
    assert response.status_code == 201, response.get_json()


def test_a_sale_payments_follow_its_debit_and_refund(
    customers: FlaskClient, identity: Identity
) -> None:
    buyer, token = identity.new_customer()
    customers.post(
        f"/customers/{buyer['username']}/wallet/charge",
        json={"amount": "50.00"},
        headers=bearer(token),
    )
    service = bearer(identity.service_token("inventory"))
    sale_id = str(uuid.uuid4())
    url = f"/internal/sale-payments/{sale_id}"

    unknown = customers.get(url, headers=service)
    assert unknown.status_code == 200
    assert unknown.get_json() == {
        "sale_id": sale_id,
        "customer_id": None,
        "debited": None,
        "refunded": None,
    }

    money = {"customer_id": buyer["id"], "amount": "12.00", "sale_id": sale_id}
    sales = bearer(identity.service_token("sales"))
    _move(customers, sales, "/internal/wallet-debits", money, f"{sale_id}:debit")
    assert customers.get(url, headers=service).get_json() == {
        "sale_id": sale_id,
        "customer_id": buyer["id"],
        "debited": "12.00",
        "refunded": None,
    }

    _move(customers, sales, "/internal/wallet-credits", money, f"{sale_id}:refund")
    paid_back = customers.get(url, headers=service).get_json()
    assert (paid_back["debited"], paid_back["refunded"]) == ("12.00", "12.00")
    # Another sale of the same buyer is not mixed in.
    other = customers.get(f"/internal/sale-payments/{uuid.uuid4()}", headers=service).get_json()
    assert other["debited"] is None


def test_only_services_and_admins_may_read_sale_payments(
    customers: FlaskClient, identity: Identity
) -> None:
    url = f"/internal/sale-payments/{uuid.uuid4()}"
    assert customers.get(url).status_code == 401
    _, token = identity.new_customer()
    forbidden = customers.get(url, headers=bearer(token))
    assert forbidden.status_code == 403
    assert forbidden.mimetype == "application/problem+json"
    assert customers.get(url, headers=bearer(identity.admin_token())).status_code == 200
    assert (
        customers.get("/internal/sale-payments/not-a-uuid", headers=bearer(token)).status_code
        == 404
    )
