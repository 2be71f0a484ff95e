"""Wallets: top-ups, deductions, the ledger, and sale debits/refunds between services."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from tests.support.identity import Identity, bearer
from tests.support.invariants import wallet_ledger_mismatches


def ledger_matches_balance(database_url: str) -> bool:
    return not wallet_ledger_mismatches(database_url)


def charge(client: FlaskClient, username: str, amount: Any, token: str, **headers: str) -> Any:
    return client.post(
        f"/customers/{username}/wallet/charge",
        json={"amount": amount},
        headers={**bearer(token), **headers},
    )


def test_charge_deduct_and_ledger(
    customers: FlaskClient, identity: Identity, database_url: str
) -> None:
    owner, token = identity.new_customer()
    name = owner["username"]
    first = charge(customers, name, "10.50", token)
    assert first.status_code == 200
    assert first.get_json()["balance"] == "10.50"
    assert first.get_json()["entry"]["kind"] == "charge"
    assert charge(customers, name, "0.25", token).get_json()["balance"] == "10.75"
    admin = bearer(identity.admin_token())
    deducted = customers.post(
        f"/customers/{name}/wallet/deduct",
        json={"amount": "0.75", "reason": "correction"},
        headers=admin,
    )
    assert deducted.status_code == 200
    assert deducted.get_json()["balance"] == "10.00"
    wallet = customers.get(f"/customers/{name}/wallet", headers=bearer(token)).get_json()
    assert wallet["balance"] == "10.00"
    assert [(e["kind"], e["amount"]) for e in wallet["items"]] == [
        ("deduct", "-0.75"), ("charge", "0.25"), ("charge", "10.50"),
    ]  # fmt: skip
    assert wallet["items"][0]["reason"] == "correction"
    assert ledger_matches_balance(database_url)


def test_deduct_never_goes_negative(customers: FlaskClient, identity: Identity) -> None:
    owner, token = identity.new_customer()
    charge(customers, owner["username"], "5.00", token)
    response = customers.post(
        f"/customers/{owner['username']}/wallet/deduct",
        json={"amount": "5.01", "reason": "too much"},
        headers=bearer(identity.admin_token()),
    )
    assert response.status_code == 409
    assert response.get_json()["code"] == "insufficient_funds"
    assert (
        customers.get(f"/customers/{owner['username']}", headers=bearer(token)).get_json()[
            "balance"
        ]
        == "5.00"
    )


def test_wallet_roles(customers: FlaskClient, identity: Identity) -> None:
    owner, token = identity.new_customer()
    _, other = identity.new_customer()
    name = owner["username"]
    assert charge(customers, name, "1.00", other).status_code == 403
    assert (
        customers.post(f"/customers/{name}/wallet/charge", json={"amount": "1.00"}).status_code
        == 401
    )
    assert charge(customers, name, "1.00", identity.service_token()).status_code == 403
    assert charge(customers, name, "1.00", identity.admin_token()).status_code == 200
    deduct = {"amount": "1.00", "reason": "r"}
    assert (
        customers.post(
            f"/customers/{name}/wallet/deduct", json=deduct, headers=bearer(token)
        ).status_code
        == 403
    )
    assert customers.get(f"/customers/{name}/wallet", headers=bearer(other)).status_code == 403
    assert customers.get(f"/customers/{name}/wallet").status_code == 401


@pytest.mark.parametrize(
    "amount",
    [
        "0",
        "0.00",
        "-1.00",
        "1.001",
        "1e3",
        "abc",
        "",
        " 1.00",
        10,
        10.5,
        None,
        True,
        "100000.01",
        "12345678901.00",
    ],
)
def test_bad_amounts_are_422_and_change_nothing(
    customers: FlaskClient, identity: Identity, amount: Any
) -> None:
    owner, token = identity.new_customer()
    response = charge(customers, owner["username"], amount, token)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert "amount" in response.get_json()["errors"]
    wallet = customers.get(
        f"/customers/{owner['username']}/wallet", headers=bearer(token)
    ).get_json()
    assert wallet["balance"] == "0.00"
    assert wallet["items"] == []


def test_charge_with_idempotency_key_is_applied_once(
    customers: FlaskClient, identity: Identity
) -> None:
    owner, token = identity.new_customer()
    key = {"Idempotency-Key": "topup-1"}
    first = charge(customers, owner["username"], "20.00", token, **key)
    again = charge(customers, owner["username"], "20.00", token, **key)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    other_body = charge(customers, owner["username"], "30.00", token, **key)
    assert other_body.status_code == 422
    assert other_body.get_json()["code"] == "idempotency_key_reused"
    profile = customers.get(f"/customers/{owner['username']}", headers=bearer(token)).get_json()
    assert profile["balance"] == "20.00"


# --- internal debits and credits --------------------------------------------------------------


def debit(client: FlaskClient, token: str, body: dict[str, Any], key: str | None) -> Any:
    headers = bearer(token) | ({"Idempotency-Key": key} if key else {})
    return client.post("/internal/wallet-debits", json=body, headers=headers)


def funded_customer(customers: FlaskClient, identity: Identity, amount: str) -> dict[str, Any]:
    owner, token = identity.new_customer()
    charge(customers, owner["username"], amount, token)
    return owner


def test_debit_is_for_services_only(customers: FlaskClient, identity: Identity) -> None:
    owner = funded_customer(customers, identity, "50.00")
    body = {"customer_id": owner["id"], "amount": "10.00", "sale_id": str(uuid.uuid4())}
    _, customer_token = identity.new_customer()
    assert (
        debit(
            customers, identity.token(owner["username"], owner["password"]), body, "k1"
        ).status_code
        == 403
    )
    assert debit(customers, customer_token, body, "k1").status_code == 403
    assert debit(customers, identity.admin_token(), body, "k1").status_code == 403
    assert (
        customers.post(
            "/internal/wallet-debits", json=body, headers={"Idempotency-Key": "k1"}
        ).status_code
        == 401
    )
    assert debit(customers, identity.service_token(), body, "k1").status_code == 201


def test_debit_requires_an_idempotency_key(customers: FlaskClient, identity: Identity) -> None:
    owner = funded_customer(customers, identity, "50.00")
    body = {"customer_id": owner["id"], "amount": "10.00", "sale_id": str(uuid.uuid4())}
    response = debit(customers, identity.service_token(), body, None)
    assert response.status_code == 400
    assert response.get_json()["code"] == "idempotency_key_required"
    bad_key = debit(customers, identity.service_token(), body, "has space")
    assert bad_key.status_code == 400
    assert bad_key.get_json()["code"] == "invalid_idempotency_key"


def test_debit_replay_and_key_reuse(
    customers: FlaskClient, identity: Identity, database_url: str
) -> None:
    owner = funded_customer(customers, identity, "50.00")
    sale = str(uuid.uuid4())
    body = {"customer_id": owner["id"], "amount": "12.34", "sale_id": sale}
    service = identity.service_token()
    first = debit(customers, service, body, f"{sale}:debit")
    assert first.status_code == 201
    assert first.get_json()["balance"] == "37.66"
    replay = debit(customers, service, body, f"{sale}:debit")
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == first.get_json()
    reused = debit(customers, service, {**body, "amount": "1.00"}, f"{sale}:debit")
    assert reused.status_code == 422
    assert reused.get_json()["code"] == "idempotency_key_reused"
    # Another key for the same sale cannot debit it twice either.
    other_key = debit(customers, service, body, f"{sale}:debit-again")
    assert other_key.status_code == 409
    assert other_key.get_json()["code"] == "already_recorded"
    admin = bearer(identity.admin_token())
    assert (
        customers.get(f"/customers/{owner['username']}", headers=admin).get_json()["balance"]
        == "37.66"
    )
    assert ledger_matches_balance(database_url)


def test_a_sale_already_debited_is_already_recorded_even_when_funds_ran_out(
    customers: FlaskClient, identity: Identity
) -> None:
    """The saga reads ``already_recorded`` as "paid": it must win over ``insufficient_funds``."""
    owner = funded_customer(customers, identity, "10.00")
    sale = str(uuid.uuid4())
    body = {"customer_id": owner["id"], "amount": "8.00", "sale_id": sale}
    service = identity.service_token()
    assert debit(customers, service, body, f"{sale}:debit").status_code == 201
    again = debit(customers, service, body, f"{sale}:debit-again")  # only 2.00 left
    assert again.status_code == 409
    assert again.get_json()["code"] == "already_recorded"


def test_debit_race_on_the_sale_id_is_caught_by_the_unique_index(
    customers_app: Any, customers: FlaskClient, identity: Identity, database_url: str
) -> None:
    """Two transactions debiting one sale: the second takes the money, then meets the first's
    ledger row and is refused; rolling it back leaves one debit."""
    from customers_service import wallet
    from shopkit.db import get_database
    from shopkit.errors import Conflict

    owner = funded_customer(customers, identity, "50.00")
    sale = uuid.uuid4()
    with customers_app.app_context():
        database = get_database()
        with database.session() as first, database.session() as second:
            wallet.debit_for_sale(first, owner["id"], Decimal("5.00"), sale, "sales")
            first.commit()
            with pytest.raises(Conflict) as caught:
                wallet.debit_for_sale(second, owner["id"], Decimal("5.00"), sale, "sales")
            second.rollback()
    assert caught.value.code == "already_recorded"
    admin = bearer(identity.admin_token())
    profile = customers.get(f"/customers/{owner['username']}", headers=admin).get_json()
    assert profile["balance"] == "45.00"
    assert ledger_matches_balance(database_url)


def test_a_customer_named_like_a_service_has_keys_of_their_own(
    customers: FlaskClient, identity: Identity
) -> None:
    """Keys belong to role and name: a customer called "sales" cannot meet the sales service's
    stored answers (or block them) by sending the same key."""
    owner = funded_customer(customers, identity, "50.00")
    sale = str(uuid.uuid4())
    body = {"customer_id": owner["id"], "amount": "5.00", "sale_id": sale}
    assert debit(customers, identity.service_token(), body, f"{sale}:debit").status_code == 201
    namesake = identity.register("sales")
    token = identity.token("sales", namesake["password"])
    charged = charge(customers, "sales", "7.00", token, **{"Idempotency-Key": f"{sale}:debit"})
    assert charged.status_code == 200, charged.get_json()
    assert "Idempotent-Replayed" not in charged.headers
    assert charged.get_json()["balance"] == "7.00"


def test_refused_debit_is_stored_and_replayed_as_refused(
    customers: FlaskClient, identity: Identity
) -> None:
    owner = funded_customer(customers, identity, "5.00")
    sale = str(uuid.uuid4())
    body = {"customer_id": owner["id"], "amount": "10.00", "sale_id": sale}
    service = identity.service_token()
    refused = debit(customers, service, body, f"{sale}:debit")
    assert refused.status_code == 409
    assert refused.get_json()["code"] == "insufficient_funds"
    # Even after a top-up, a retry of the same call stays refused: the saga already acted on it.
    charge(customers, owner["username"], "100.00", identity.admin_token())
    retried = debit(customers, service, body, f"{sale}:debit")
    assert retried.status_code == 409
    assert retried.headers["Idempotent-Replayed"] == "true"
    balance = customers.get(
        f"/customers/{owner['username']}", headers=bearer(identity.admin_token())
    )
    assert balance.get_json()["balance"] == "105.00"


def test_debit_of_unknown_or_inactive_customer(customers: FlaskClient, identity: Identity) -> None:
    service = identity.service_token()
    missing = debit(
        customers,
        service,
        {"customer_id": 999999, "amount": "1.00", "sale_id": str(uuid.uuid4())},
        "m1",
    )
    assert missing.status_code == 404
    owner = funded_customer(customers, identity, "10.00")
    customers.delete(f"/customers/{owner['username']}", headers=bearer(identity.admin_token()))
    inactive = debit(
        customers,
        service,
        {"customer_id": owner["id"], "amount": "1.00", "sale_id": str(uuid.uuid4())},
        "m2",
    )
    assert inactive.status_code == 409
    assert inactive.get_json()["code"] == "customer_inactive"


def test_a_sale_total_wider_than_any_balance_is_insufficient_funds(
    customers: FlaskClient, identity: Identity, database_url: str
) -> None:
    """A sale's total may reach 1,000 x the largest price: well-formed, and simply unpayable."""
    owner = funded_customer(customers, identity, "10.00")
    body = {"customer_id": owner["id"], "amount": "19999999999.98", "sale_id": str(uuid.uuid4())}
    refused = debit(customers, identity.service_token(), body, "huge")
    assert refused.status_code == 409
    assert refused.get_json()["code"] == "insufficient_funds"
    assert ledger_matches_balance(database_url)


@pytest.mark.parametrize(
    "body",
    [
        {"customer_id": "1", "amount": "1.00", "sale_id": "00000000-0000-0000-0000-000000000001"},
        {"customer_id": 1, "amount": "0.00", "sale_id": "00000000-0000-0000-0000-000000000001"},
        {"customer_id": 1, "amount": "1.00", "sale_id": "not-a-uuid"},
        {"customer_id": 1, "amount": "1.00"},
        {"customer_id": 0, "amount": "1.00", "sale_id": "00000000-0000-0000-0000-000000000001"},
        {"customer_id": 2**63, "amount": "1.00", "sale_id": "00000000-0000-0000-0000-000000000001"},
        # Wider than the widest order total (50 lines of 1,000 units at the largest price).
        {"customer_id": 1, "amount": "1" * 16, "sale_id": "00000000-0000-0000-0000-000000000001"},
    ],
)
def test_bad_debit_bodies_are_422(
    customers: FlaskClient, identity: Identity, body: dict[str, Any]
) -> None:
    response = debit(customers, identity.service_token(), body, "bad-body")
    assert response.status_code == 422


def test_refund_only_of_a_real_debit_and_once(
    customers: FlaskClient, identity: Identity, database_url: str
) -> None:
    owner = funded_customer(customers, identity, "30.00")
    service = identity.service_token()
    sale = str(uuid.uuid4())
    body = {"customer_id": owner["id"], "amount": "10.00", "sale_id": sale}
    headers = bearer(service)
    no_debit = customers.post(
        "/internal/wallet-credits", json=body, headers=headers | {"Idempotency-Key": "r0"}
    )
    assert no_debit.status_code == 409
    assert no_debit.get_json()["code"] == "no_matching_debit"
    assert debit(customers, service, body, f"{sale}:debit").status_code == 201
    wrong_amount = customers.post(
        "/internal/wallet-credits",
        json={**body, "amount": "11.00"},
        headers=headers | {"Idempotency-Key": "r1"},
    )
    assert wrong_amount.status_code == 409
    assert wrong_amount.get_json()["code"] == "amount_mismatch"
    refund = customers.post(
        "/internal/wallet-credits", json=body, headers=headers | {"Idempotency-Key": "r2"}
    )
    assert refund.status_code == 201
    assert refund.get_json()["balance"] == "30.00"
    replay = customers.post(
        "/internal/wallet-credits", json=body, headers=headers | {"Idempotency-Key": "r2"}
    )
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (201, "true")
    assert replay.get_json() == refund.get_json()
    twice = customers.post(
        "/internal/wallet-credits", json=body, headers=headers | {"Idempotency-Key": "r3"}
    )
    assert twice.status_code == 409
    assert twice.get_json()["code"] == "already_recorded"
    assert ledger_matches_balance(database_url)


def test_refund_race_on_the_sale_id_is_caught_by_the_unique_index(
    customers_app: Any, customers: FlaskClient, identity: Identity, database_url: str
) -> None:
    """Two transactions refunding one sale under different keys: one refund, not two."""
    from customers_service import wallet
    from shopkit.db import get_database
    from shopkit.errors import Conflict

    owner = funded_customer(customers, identity, "50.00")
    sale = uuid.uuid4()
    with customers_app.app_context():
        database = get_database()
        with database.session() as first, database.session() as second:
            wallet.debit_for_sale(first, owner["id"], Decimal("5.00"), sale, "sales")
            first.commit()
            wallet.credit_refund(first, owner["id"], Decimal("5.00"), sale, "sales")
            first.commit()
            with pytest.raises(Conflict) as caught:
                wallet.credit_refund(second, owner["id"], Decimal("5.00"), sale, "sales")
            second.rollback()
    assert caught.value.code == "already_recorded"
    admin = bearer(identity.admin_token())
    profile = customers.get(f"/customers/{owner['username']}", headers=admin).get_json()
    assert profile["balance"] == "50.00"
    assert ledger_matches_balance(database_url)


@pytest.mark.processes
def test_concurrent_debits_never_overdraw(
    live_stack: Any, identity: Identity, database_url: str
) -> None:
    """24 debits of 10.00 race on a wallet holding 75.00: exactly 7 succeed, never negative."""
    live_stack.start("customers")
    base = live_stack.url("customers")
    owner, token = identity.new_customer()
    charge(identity.client, owner["username"], "75.00", token)
    service = live_stack.service_token()

    def attempt(i: int) -> int:
        sale = str(uuid.uuid4())
        response = requests.post(
            base + "/internal/wallet-debits",
            json={"customer_id": owner["id"], "amount": "10.00", "sale_id": sale},
            headers={"Authorization": f"Bearer {service}", "Idempotency-Key": f"{sale}:debit"},
            timeout=30,
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=24) as pool:
        statuses = list(pool.map(attempt, range(24)))
    assert statuses.count(201) == 7
    assert statuses.count(409) == 17
    admin = bearer(identity.admin_token())
    balance = identity.client.get(f"/customers/{owner['username']}", headers=admin).get_json()[
        "balance"
    ]
    assert Decimal(balance) == Decimal("5.00")
    assert ledger_matches_balance(database_url)


@pytest.mark.processes
def test_concurrent_retries_of_one_debit_apply_once(live_stack: Any, identity: Identity) -> None:
    """The same debit sent 12 times at once (a retry storm) moves money exactly once."""
    live_stack.start("customers")
    base = live_stack.url("customers")
    owner, token = identity.new_customer()
    charge(identity.client, owner["username"], "100.00", token)
    service = live_stack.service_token()
    sale = str(uuid.uuid4())

    def attempt(_: int) -> tuple[int, str | None]:
        response = requests.post(
            base + "/internal/wallet-debits",
            json={"customer_id": owner["id"], "amount": "10.00", "sale_id": sale},
            headers={"Authorization": f"Bearer {service}", "Idempotency-Key": f"{sale}:debit"},
            timeout=30,
        )
        return response.status_code, response.json().get("code")

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(attempt, range(12)))
    # Each answer is the debit (201, first or replayed) or "still in flight" (409).
    assert all(s == 201 or (s == 409 and c == "idempotency_key_in_use") for s, c in results), (
        results
    )
    assert any(s == 201 for s, _ in results)
    admin = bearer(identity.admin_token())
    balance = identity.client.get(f"/customers/{owner['username']}", headers=admin).get_json()[
        "balance"
    ]
    assert balance == "90.00"


def test_audit_endpoints_are_admin_only(customers: FlaskClient, identity: Identity) -> None:
    owner = funded_customer(customers, identity, "40.00")
    service = identity.service_token()
    sale = str(uuid.uuid4())
    debit(
        customers,
        service,
        {"customer_id": owner["id"], "amount": "15.00", "sale_id": sale},
        f"{sale}:debit",
    )
    admin = bearer(identity.admin_token())
    page = customers.get("/ledger?sales_only=true", headers=admin).get_json()
    assert [(e["kind"], e["amount"], e["sale_id"], e["customer_id"]) for e in page["items"]] == [
        ("sale_debit", "-15.00", sale, owner["id"])
    ]
    charges = customers.get("/ledger?kind=charge", headers=admin).get_json()
    assert charges["total"] == 1
    check = customers.get("/wallets/consistency", headers=admin).get_json()
    assert check["ok"] is True
    assert check["mismatches"] == []
    assert check["total_balance"] == "25.00"
    _, token = identity.new_customer()
    assert customers.get("/ledger", headers=bearer(token)).status_code == 403
    assert customers.get("/wallets/consistency", headers=bearer(service)).status_code == 403
    assert customers.get("/ledger?kind=bogus", headers=admin).status_code == 422


def test_consistency_check_finds_a_tampered_wallet(
    customers: FlaskClient, identity: Identity, database_url: str
) -> None:
    owner = funded_customer(customers, identity, "10.00")
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE customers.customers SET balance = 99 WHERE id = :i"), {"i": owner["id"]}
        )
    engine.dispose()
    check = customers.get("/wallets/consistency", headers=bearer(identity.admin_token())).get_json()
    assert check["ok"] is False
    assert check["mismatches"] == [
        {"username": owner["username"], "balance": "99.00", "ledger_sum": "10.00"}
    ]


def test_batch_charges_all_or_nothing(
    customers: FlaskClient, identity: Identity, database_url: str
) -> None:
    first, token = identity.new_customer()
    second, _ = identity.new_customer()
    admin = bearer(identity.admin_token())
    body = {
        "charges": [
            {"username": first["username"], "amount": "10.00"},
            {"username": second["username"], "amount": "2.50"},
        ]
    }
    assert (
        customers.post("/wallets/charges/batch", json=body, headers=bearer(token)).status_code
        == 403
    )
    done = customers.post("/wallets/charges/batch", json=body, headers=admin)
    assert done.status_code == 200
    assert done.get_json() == {"charged": 2, "total": "12.50"}
    missing = {
        "charges": [
            {"username": first["username"], "amount": "1.00"},
            {"username": "nobody_x", "amount": "1.00"},
        ]
    }
    refused = customers.post("/wallets/charges/batch", json=missing, headers=admin)
    assert refused.status_code == 404
    assert refused.get_json()["usernames"] == ["nobody_x"]
    assert (
        customers.get(f"/customers/{first['username']}", headers=admin).get_json()["balance"]
        == "10.00"
    )
    assert (
        customers.post("/wallets/charges/batch", json={"charges": []}, headers=admin).status_code
        == 422
    )
    assert ledger_matches_balance(database_url)


def test_batch_charges_to_one_wallet_twice_keep_the_ledger_exact(
    customers: FlaskClient, identity: Identity, database_url: str
) -> None:
    owner, token = identity.new_customer()
    admin = bearer(identity.admin_token())
    charges = [{"username": owner["username"], "amount": a} for a in ("1.00", "2.00", "3.50")]
    assert (
        customers.post(
            "/wallets/charges/batch", json={"charges": charges}, headers=admin
        ).status_code
        == 200
    )
    wallet = customers.get(
        f"/customers/{owner['username']}/wallet", headers=bearer(token)
    ).get_json()
    assert wallet["balance"] == "6.50"
    assert [e["balance_after"] for e in wallet["items"]] == ["6.50", "3.00", "1.00"]
    assert ledger_matches_balance(database_url)
