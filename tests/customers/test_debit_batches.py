"""``POST /internal/wallet-debits/batch``: many sales' debits in one transaction, each
answered as its single call would be, under its own key."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.support.customers import DEBIT_BATCH, debit_item, funded
from tests.support.identity import Identity, bearer


def balance(customers: FlaskClient, admin: dict[str, str], username: str) -> Decimal:
    return Decimal(customers.get(f"/customers/{username}", headers=admin).get_json()["balance"])


def test_a_batch_debits_each_sale_and_a_refusal_never_fails_its_neighbours(
    customers: FlaskClient,
    identity: Identity,
    sales: dict[str, str],
    admin: dict[str, str],
    count_rows: Callable[[str], int],
) -> None:
    rich = funded(identity, customers, "50.00")
    poor = funded(identity, customers, "15.00")
    items = [
        debit_item(poor["id"], "10.00"),
        debit_item(rich["id"], "20.00"),
        debit_item(poor["id"], "10.00"),  # the same wallet again: only 5.00 left
        debit_item(987654, "1.00"),  # no such customer
        debit_item(rich["id"], "30.00"),
    ]
    response = customers.post(DEBIT_BATCH, json={"items": items}, headers=sales)
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert [r["status"] for r in results] == [201, 201, 409, 404, 201]
    assert results[2]["body"]["code"] == "insufficient_funds"
    assert results[3]["body"]["code"] == "not_found"
    assert results[1]["body"]["amount"] == "20.00"
    assert results[4]["body"]["balance"] == "0.00"
    assert balance(customers, admin, rich["username"]) == Decimal("0.00")
    assert balance(customers, admin, poor["username"]) == Decimal("5.00")
    entries = count_rows("customers.ledger_entries")
    again = customers.post(DEBIT_BATCH, json={"items": items}, headers=sales).get_json()["results"]
    assert all(r["replayed"] for r in again)
    assert [r["body"] for r in again] == [r["body"] for r in results]
    assert count_rows("customers.ledger_entries") == entries  # nothing twice
    # Recovery's single call with the same key replays the batch's answer.
    alone = customers.post(
        "/internal/wallet-debits",
        json=items[1]["request"],
        headers={**sales, "Idempotency-Key": items[1]["idempotency_key"]},
    )
    assert alone.status_code == 201 and alone.headers["Idempotent-Replayed"] == "true"
    assert alone.get_json() == results[1]["body"]


def test_a_sale_debited_under_another_key_is_already_recorded(
    customers: FlaskClient, identity: Identity, sales: dict[str, str]
) -> None:
    buyer = funded(identity, customers, "50.00")
    sale = str(uuid.uuid4())
    first = customers.post(
        DEBIT_BATCH, json={"items": [debit_item(buyer["id"], "5.00", sale)]}, headers=sales
    )
    assert first.get_json()["results"][0]["status"] == 201
    twice = {**debit_item(buyer["id"], "5.00", sale), "idempotency_key": "other"}
    second = customers.post(DEBIT_BATCH, json={"items": [twice]}, headers=sales).get_json()[
        "results"
    ]
    assert (second[0]["status"], second[0]["body"]["code"]) == (409, "already_recorded")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"items": []},
        {"items": [{"idempotency_key": "k", "request": {"customer_id": 1, "amount": "-1.00",
                                                         "sale_id": str(uuid.uuid4())}}]},
        {"items": [{"idempotency_key": "k"}]},
        {"items": [{**debit_item(1, "1.00"), "idempotency_key": "k"},
                   {**debit_item(2, "1.00"), "idempotency_key": "k"}]},
        {"items": [debit_item(1, "1.00") for _ in range(101)]},
    ],
)  # fmt: skip
def test_bad_batches_are_refused_whole_and_write_nothing(
    customers: FlaskClient,
    sales: dict[str, str],
    count_rows: Callable[[str], int],
    body: dict[str, Any],
) -> None:
    response = customers.post(DEBIT_BATCH, json=body, headers=sales)
    assert response.status_code == 422, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert count_rows("customers.idempotency_keys") == 0


def test_only_the_sales_service_may_send_a_batch(
    customers: FlaskClient,
    identity: Identity,
    admin: dict[str, str],
    count_rows: Callable[[str], int],
) -> None:
    buyer, token = identity.new_customer()
    body = {"items": [debit_item(buyer["id"], "1.00")]}
    for headers, status in (
        ({}, 401),
        (bearer(token), 403),
        (admin, 403),
        (bearer(identity.service_token("inventory")), 403),
        (bearer(identity.service_token("reviews")), 403),
    ):
        response = customers.post(DEBIT_BATCH, json=body, headers=headers)
        assert response.status_code == status, response.get_json()
        assert response.mimetype == "application/problem+json"
    assert count_rows("customers.idempotency_keys") == 0
