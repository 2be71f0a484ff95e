"""Customer events: each account change writes its event in the change's transaction, with
data valid against the catalogue; a refused or rolled-back change writes none; a batch writes
its events in one statement; the backfill (and the migration that runs it once) announces the
customers registered before. Real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session

from customers_service import accounts
from customers_service.passwords import Passwords
from shopkit.db import transaction
from shopkit.events.catalog import validate_data
from shopkit.migrations import upgrade
from tests.support.database import scratch_database
from tests.support.identity import Identity, bearer, customer_payload
from tests.support.outbox import checked, outbox_rows

CUSTOMER = "shop.customer.{}.v1"

#: This file relays the outbox itself (tests.conftest: no live relay of it meanwhile).
pytestmark = pytest.mark.sole_relay("customers")


def customer_events(db_engine: Engine, customer_id: int | None = None) -> list[Any]:
    """The customers outbox's customer events (of one customer), each checked against its schema."""
    rows = outbox_rows(db_engine, "customers", aggregate="customer", aggregate_id=customer_id)
    return checked(rows, "customer", id_field="customer_id")


def _summary(rows: list[Any]) -> list[tuple[int, str]]:
    return [(row.sequence, row.type.split(".")[2]) for row in rows]


def test_each_account_change_tells_its_contact_data_once(
    customers: FlaskClient, identity: Identity, admin: dict[str, str], db_engine: Engine
) -> None:
    ada, token = identity.new_customer(full_name="Ada Lovelace", email="Ada@Example.com")
    [registered] = customer_events(db_engine, ada["id"])
    assert registered.type == CUSTOMER.format("registered")
    assert registered.payload == {"customer_id": ada["id"], "username": ada["username"],
                                  "full_name": "Ada Lovelace", "email": "ada@example.com"}  # fmt: skip
    taken = customers.post("/customers", json=customer_payload(ada["username"]))
    assert taken.status_code == 409  # refused: nothing told
    path = f"/customers/{ada['username']}"
    assert customers.patch(path, json={"age": 41}, headers=bearer(token)).status_code == 200
    assert customers.patch(path, json={"email": "ada@example.com"},
                           headers=bearer(token)).status_code == 200  # fmt: skip
    assert len(customer_events(db_engine, ada["id"])) == 1  # neither name nor email changed
    changed = customers.patch(
        path, json={"full_name": "Ada King", "email": "ADA@king.example"}, headers=bearer(token)
    )
    assert changed.status_code == 200
    assert customers.delete(path, headers=admin).status_code == 204
    assert customers.delete(path, headers=admin).status_code == 204  # already deactivated
    reactivated = customers.post(f"{path}/reactivation", headers=admin)
    assert reactivated.status_code == 200
    assert customers.post(f"{path}/reactivation", headers=admin).status_code == 200

    rows = customer_events(db_engine, ada["id"])
    assert _summary(rows) == [(1, "registered"), (2, "updated"), (3, "deactivated"),
                              (4, "reactivated")]  # fmt: skip
    assert rows[1].payload == {"customer_id": ada["id"], "username": ada["username"],
                               "full_name": "Ada King", "email": "ada@king.example"}  # fmt: skip
    assert rows[2].payload == rows[3].payload == {"customer_id": ada["id"]}
    # The bootstrap admin is no customer: nothing about it is told.
    assert {row.payload["customer_id"] for row in customer_events(db_engine)} == {ada["id"]}


def test_a_registration_and_its_event_commit_or_roll_back_together(
    customers_app: Flask, db_engine: Engine
) -> None:
    passwords = Passwords(customers_app.config["SHOP_SETTINGS"])
    data = customer_payload()
    with (
        Session(db_engine) as session,
        pytest.raises(RuntimeError, match="after the registration"),
        transaction(session),
    ):
        customer = accounts.register(session, passwords, dict(data))
        inside = session.execute(
            text("SELECT type FROM customers.outbox WHERE aggregate_id = :id"),
            {"id": str(customer.id)},
        ).scalars()
        assert list(inside) == [CUSTOMER.format("registered")]  # same transaction
        raise RuntimeError("something failed after the registration")
    assert customer_events(db_engine) == []
    with db_engine.connect() as conn:
        found = conn.execute(
            text("SELECT count(*) FROM customers.customers WHERE username = :u"),
            {"u": data["username"]},
        )
        assert found.scalar_one() == 0


@pytest.fixture
def outbox_inserts(customers_app: Flask) -> Iterator[list[str]]:
    """The ``INSERT INTO customers.outbox`` statements the customers app runs meanwhile."""
    engine = customers_app.extensions["shop_db"].engine
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "INSERT INTO" in statement and "outbox" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_a_batch_tells_every_registration_in_one_statement_and_a_refused_one_none(
    customers: FlaskClient, admin: dict[str, str], db_engine: Engine, outbox_inserts: list[str]
) -> None:
    batch = [customer_payload() for _ in range(5)]
    created = customers.post("/customers/batch", json={"customers": batch}, headers=admin)
    assert created.status_code == 201, created.get_json()
    assert len(outbox_inserts) == 1
    rows = customer_events(db_engine)
    assert [row.payload["username"] for row in rows] == [c["username"] for c in batch]
    assert {row.sequence for row in rows} == {1}
    clash = [customer_payload(), customer_payload(batch[0]["username"])]
    refused = customers.post("/customers/batch", json={"customers": clash}, headers=admin)
    assert refused.status_code == 409
    assert len(customer_events(db_engine)) == 5


def _forget_customer_events(db_engine: Engine) -> None:
    """As if the customers had registered before customers told registrations."""
    with db_engine.begin() as conn:
        conn.execute(text("DELETE FROM customers.outbox WHERE aggregate = 'customer'"))


def test_the_backfill_announces_the_customers_registered_before_once(
    customers_app: Flask, identity: Identity, admin: dict[str, str], db_engine: Engine
) -> None:
    old = [identity.register() for _ in range(3)]
    client = customers_app.test_client()
    assert client.delete(f"/customers/{old[1]['username']}", headers=admin).status_code == 204
    _forget_customer_events(db_engine)
    new = identity.register()  # registered after the change: it has its event already
    runner = customers_app.test_cli_runner()

    result = runner.invoke(args=["events", "backfill-customers"])
    assert result.exit_code == 0, result.output
    assert "announced 3 customer(s)" in result.output
    by_customer = {c["id"]: _summary(customer_events(db_engine, c["id"])) for c in [*old, new]}
    assert by_customer == {
        old[0]["id"]: [(1, "registered")],
        old[1]["id"]: [(1, "registered"), (2, "deactivated")],
        old[2]["id"]: [(1, "registered")],
        new["id"]: [(1, "registered")],
    }
    assert customer_events(db_engine, old[0]["id"])[0].payload["email"] == old[0]["email"]
    again = runner.invoke(args=["events", "backfill-customers"])
    assert "announced 0 customer(s)" in again.output
    assert len(customer_events(db_engine)) == 5

    everyone = runner.invoke(args=["events", "backfill-customers", "--all"])
    assert "announced 4 customer(s)" in everyone.output
    assert _summary(customer_events(db_engine, old[1]["id"]))[2:] == [(3, "registered"),
                                                                      (4, "deactivated")]  # fmt: skip
    assert _summary(customer_events(db_engine, new["id"])) == [(1, "registered"), (2, "registered")]


def test_the_migration_announces_the_existing_customers_once(database_url: str) -> None:
    with scratch_database(database_url, "shop_customer_events_migration") as url:
        upgrade("customers_service", url, "0003")
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO customers.customers (username, password_hash, full_name, email,"
                    " age, address, gender, marital_status, role, is_active) VALUES"
                    " ('ada', 'x', 'Ada Lovelace', 'ada@example.com', 36, 'London', 'female',"
                    "  'married', 'customer', true),"
                    " ('bob', 'x', 'Bob', 'bob@example.com', 40, 'Paris', 'male', 'single',"
                    "  'customer', false),"
                    " ('root', 'x', 'Root', 'root@example.com', 40, 'HQ', 'male', 'single',"
                    "  'admin', true)"
                )
            )
        upgrade("customers_service", url)
        query = text(
            "SELECT c.username, o.sequence, o.type, o.payload FROM customers.outbox o"
            " JOIN customers.customers c ON o.aggregate_id = c.id::text"
            " WHERE o.aggregate = 'customer' ORDER BY o.id"
        )
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        for row in rows:
            validate_data(row.type, row.payload)
        # The admin is not told.
        assert [(r.username, r.sequence, r.type.split(".")[2]) for r in rows] == [
            ("ada", 1, "registered"),
            ("bob", 1, "registered"),
            ("bob", 2, "deactivated"),
        ]
        assert rows[0].payload["full_name"] == "Ada Lovelace"
        assert rows[0].payload["email"] == "ada@example.com"
        engine.dispose()
