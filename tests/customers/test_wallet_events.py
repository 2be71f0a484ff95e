"""Customers' wallet events: each ledger entry writes exactly one outbox row in its own
transaction, with data valid against the catalogue's schema; a refused change writes none;
the relay publishes each wallet's events in order. Real PostgreSQL, a real embedded Valkey."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import Engine

from customers_service.models import OUTBOX
from tests.support.customers import DEBIT_BATCH, debit_item, funded
from tests.support.events import published_by_subject, relay_everything
from tests.support.identity import Identity
from tests.support.outbox import checked, outbox_rows

WALLET = "shop.wallet.{}.v1"

#: This file relays the outbox itself (tests.conftest: no live relay of it meanwhile).
pytestmark = pytest.mark.sole_relay("customers")


def events(db_engine: Engine, customer_id: int | None = None) -> list[Any]:
    """The customers outbox's wallet events (of one wallet), each checked against its schema."""
    rows = outbox_rows(db_engine, "customers", aggregate="wallet", aggregate_id=customer_id)
    return checked(rows, "wallet", id_field="customer_id")


def test_each_wallet_change_writes_one_event_and_a_refusal_none(
    customers: FlaskClient,
    identity: Identity,
    sales: dict[str, str],
    admin: dict[str, str],
    db_engine: Engine,
) -> None:
    buyer = funded(identity, customers, "50.00")
    deducted = customers.post(
        f"/customers/{buyer['username']}/wallet/deduct",
        json={"amount": "5.00", "reason": "goodwill reversed"},
        headers=admin,
    )
    assert deducted.status_code == 200, deducted.get_json()
    sale_id = str(uuid.uuid4())
    money = {"customer_id": buyer["id"], "amount": "12.00", "sale_id": sale_id}
    debit = {**sales, "Idempotency-Key": f"{sale_id}:debit"}
    assert customers.post("/internal/wallet-debits", json=money, headers=debit).status_code == 201
    # Refused: the same sale again under another key, and a debit too large.
    again = {**sales, "Idempotency-Key": f"{sale_id}:debit-again"}
    assert customers.post("/internal/wallet-debits", json=money, headers=again).status_code == 409
    too_much = {"customer_id": buyer["id"], "amount": "99.00", "sale_id": str(uuid.uuid4())}
    refused = customers.post(
        "/internal/wallet-debits", json=too_much, headers={**sales, "Idempotency-Key": "big"}
    )
    assert (refused.status_code, refused.get_json()["code"]) == (409, "insufficient_funds")
    refund = {**sales, "Idempotency-Key": f"{sale_id}:refund"}
    assert customers.post("/internal/wallet-credits", json=money, headers=refund).status_code == 201

    rows = events(db_engine, buyer["id"])
    assert [(row.sequence, row.type) for row in rows] == [
        (1, WALLET.format("credited")),
        (2, WALLET.format("debited")),
        (3, WALLET.format("debited")),
        (4, WALLET.format("refunded")),
    ]
    assert [(r.payload["amount"], r.payload["balance"], r.payload["order_id"]) for r in rows] == [
        ("50.00", "50.00", None),
        ("5.00", "45.00", None),
        ("12.00", "33.00", sale_id),
        ("12.00", "45.00", sale_id),
    ]
    assert all(row.payload["customer_id"] == buyer["id"] for row in rows)


def test_batches_write_an_event_per_entry_and_none_for_a_refusal(
    customers: FlaskClient,
    identity: Identity,
    sales: dict[str, str],
    admin: dict[str, str],
    db_engine: Engine,
) -> None:
    rich = funded(identity, customers, "50.00")
    poor = funded(identity, customers, "15.00")
    items = [
        debit_item(poor["id"], "10.00"),
        debit_item(rich["id"], "20.00"),
        debit_item(poor["id"], "10.00"),
    ]
    results = customers.post(DEBIT_BATCH, json={"items": items}, headers=sales).get_json()[
        "results"
    ]
    assert [r["status"] for r in results] == [201, 201, 409]
    charges = [
        {"username": rich["username"], "amount": "1.00"},
        {"username": poor["username"], "amount": "2.00"},
        {"username": rich["username"], "amount": "3.00"},
    ]
    charged = customers.post("/wallets/charges/batch", json={"charges": charges}, headers=admin)
    assert charged.status_code in (200, 201), charged.get_json()
    summary = [(r.type.split(".")[2], r.payload["amount"], r.payload["balance"]) for r in
               events(db_engine, rich["id"])]  # fmt: skip
    assert summary == [
        ("credited", "50.00", "50.00"),
        ("debited", "20.00", "30.00"),
        ("credited", "1.00", "31.00"),
        ("credited", "3.00", "34.00"),
    ]
    summary = [(r.type.split(".")[2], r.payload["amount"], r.payload["balance"]) for r in
               events(db_engine, poor["id"])]  # fmt: skip
    assert summary == [
        ("credited", "15.00", "15.00"),
        ("debited", "10.00", "5.00"),
        ("credited", "2.00", "7.00"),
    ]


def test_the_relay_publishes_each_wallets_events_in_order(
    customers: FlaskClient,
    identity: Identity,
    sales: dict[str, str],
    db_engine: Engine,
    valkey: redis.Redis,
) -> None:
    first = funded(identity, customers, "30.00")
    second = funded(identity, customers, "30.00")
    for buyer in (first, second, first):
        sale_id = str(uuid.uuid4())
        money = {"customer_id": buyer["id"], "amount": "5.00", "sale_id": sale_id}
        headers = {**sales, "Idempotency-Key": f"{sale_id}:debit"}
        assert customers.post(
            "/internal/wallet-debits", json=money, headers=headers
        ).status_code == (201)
    relay_everything(db_engine, OUTBOX, valkey, "customers")
    by_wallet = published_by_subject(valkey, "wallet")
    assert [(e.type, e.data["balance"]) for e in by_wallet[str(first["id"])]] == [
        (WALLET.format("credited"), "30.00"),
        (WALLET.format("debited"), "25.00"),
        (WALLET.format("debited"), "20.00"),
    ]
    assert [e.sequence for e in by_wallet[str(second["id"])]] == [1, 2]
    assert all(e.source == "/customers" for events_ in by_wallet.values() for e in events_)
    assert all(row.published_at is not None for row in events(db_engine))
