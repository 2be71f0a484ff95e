"""Registration: the profile shape, duplicates and every kind of bad input."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, func, select

from customers_service.models import Customer
from tests.support.identity import customer_payload

PROFILE_KEYS = {
    "id", "username", "full_name", "email", "age", "address", "gender",
    "marital_status", "balance", "is_active", "deactivated_at", "created_at",
}  # fmt: skip


def count_customers(database_url: str) -> int:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(Customer)).scalar_one()
    engine.dispose()
    return int(n)


def test_register_returns_profile_with_zero_balance_and_no_secret(customers: FlaskClient) -> None:
    response = customers.post("/customers", json=customer_payload("Grace.H"))
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == PROFILE_KEYS
    assert body["username"] == "grace.h"  # usernames are case-insensitive, stored lower-case
    assert body["balance"] == "0.00"
    assert "password" not in response.get_data(as_text=True)
    assert "argon2" not in response.get_data(as_text=True)


def test_password_is_stored_as_slow_hash(customers: FlaskClient, database_url: str) -> None:
    customers.post("/customers", json=customer_payload("hashcheck"))
    engine = create_engine(database_url)
    with engine.connect() as conn:
        stored = conn.execute(
            select(Customer.password_hash).where(Customer.username == "hashcheck")
        ).scalar_one()
    engine.dispose()
    assert stored.startswith("$argon2id$")
    assert "correct-horse-battery" not in stored


def test_duplicate_username_is_409(customers: FlaskClient) -> None:
    first = customer_payload("dupe_one")
    assert customers.post("/customers", json=first).status_code == 201
    second = {**customer_payload("dupe_two"), "username": "DUPE_ONE"}
    response = customers.post("/customers", json=second)
    assert response.status_code == 409
    assert response.get_json()["code"] == "already_exists"
    assert "emails" not in response.get_json()


def test_registration_never_reveals_that_an_email_is_taken(customers: FlaskClient) -> None:
    # Issue 14 finding 3: a 409 for a taken email told who has an account.
    first = customer_payload("mail_one")
    assert customers.post("/customers", json=first).status_code == 201
    second = customer_payload("mail_two", email=first["email"].upper())
    response = customers.post("/customers", json=second)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["username"] == "mail_two"


BAD_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("missing username", {k: v for k, v in customer_payload().items() if k != "username"}),
    ("missing password", {k: v for k, v in customer_payload().items() if k != "password"}),
    ("age as string", customer_payload(age="30")),
    ("age as float", customer_payload(age=30.5)),
    ("age as bool", customer_payload(age=True)),
    ("too young", customer_payload(age=12)),
    ("too old", customer_payload(age=121)),
    ("unknown gender", customer_payload(gender="robot")),
    ("unknown marital status", customer_payload(marital_status="complicated")),
    ("bad email", customer_payload(email="not-an-email")),
    ("short password", customer_payload(password="short")),
    ("username with spaces", customer_payload(username="has space")),
    ("blank full name", customer_payload(full_name="   ")),
    ("client sets balance", customer_payload(balance="1000.00")),
    ("client sets role", customer_payload(role="admin")),
    ("unknown field", customer_payload(favourite_colour="blue")),
]


@pytest.mark.parametrize(("case", "body"), BAD_BODIES, ids=[c for c, _ in BAD_BODIES])
def test_bad_registration_is_422_and_writes_nothing(
    customers: FlaskClient, database_url: str, case: str, body: dict[str, Any]
) -> None:
    before = count_customers(database_url)
    response = customers.post("/customers", json=body)
    assert response.status_code == 422, case
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["code"] == "validation_error"
    assert problem["status"] == 422
    assert problem["errors"]
    assert count_customers(database_url) == before


def test_malformed_json_is_400_problem(customers: FlaskClient) -> None:
    response = customers.post(
        "/customers", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "malformed_json"


def test_json_array_instead_of_object_is_422(customers: FlaskClient) -> None:
    response = customers.post("/customers", json=[customer_payload()])
    assert response.status_code == 422
    assert response.get_json()["code"] == "validation_error"
