"""Inventory's product events: every stock change, new product and archive writes its event
in the transaction of the change, valid against the catalogue's schema; a refusal or a
rollback writes none; a batch of reservations writes the events of all its sales with one
statement; the relay publishes them in order per product.

Real PostgreSQL (statements counted on the app's own engine), a real embedded Valkey.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, text

from inventory_service import stock
from inventory_service.models import OUTBOX
from shopkit.db import transaction
from tests.support.events import published_by_subject, relay_everything
from tests.support.inventory import BATCH, Wallets, batch_item, reserve, reserve_items
from tests.support.outbox import checked, outbox_rows

STOCK = "shop.product.stock_changed.v1"
CREATED = "shop.product.created.v1"
ARCHIVED = "shop.product.archived.v1"
RESTORED = "shop.product.restored.v1"

#: This file relays the outbox itself (tests.conftest: no live relay of it meanwhile).
pytestmark = pytest.mark.sole_relay("inventory")


def events(db_engine: Engine, product_id: int | None = None) -> list[Any]:
    """The inventory outbox's rows (of one product) in id order, each checked against its
    schema, with gapless sequences per product."""
    rows = outbox_rows(db_engine, "inventory", aggregate_id=product_id)
    return checked(rows, "product", id_field="product_id", gapless=True)


def stock_moves(db_engine: Engine, product_id: int) -> list[tuple[int, int]]:
    """``(stock, delta)`` of each of a product's stock events, in order."""
    return [
        (row.payload["stock"], row.payload["delta"])
        for row in events(db_engine, product_id)
        if row.type == STOCK
    ]


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    """The SQL statements ``app`` sends to PostgreSQL while the block runs."""
    engine = app.extensions["shop_db"].engine
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def outbox_writes(sent: list[str]) -> list[str]:
    """The statements that wrote into the inventory outbox or took its advisory locks."""
    return [s for s in sent if "inventory.outbox" in s or "pg_advisory_xact_lock(k)" in s]


def test_each_change_writes_one_schema_valid_event_and_a_refusal_none(
    inventory: FlaskClient,
    admin: dict[str, str],
    service: dict[str, str],
    wallets: Wallets,
    make_product: Callable[..., dict[str, Any]],
    db_engine: Engine,
) -> None:
    lamp = make_product(name="Lamp", price="12.50", stock=5)
    desk = make_product(name="Desk", price="99.00", stock=0)
    assert [(row.type, row.payload) for row in events(db_engine, lamp["id"])] == [
        (CREATED, {"product_id": lamp["id"], "name": "Lamp", "price": "12.50"}),
        (STOCK, {"product_id": lamp["id"], "stock": 5, "delta": 5}),
    ]
    assert [row.type for row in events(db_engine, desk["id"])] == [CREATED]  # no stock yet

    restocked = inventory.post(
        f"/products/{lamp['id']}/restock", json={"quantity": 3}, headers=admin
    )
    assert restocked.status_code == 200
    deducted = inventory.post(f"/products/{lamp['id']}/deduct", json={"quantity": 2}, headers=admin)
    assert deducted.status_code == 200
    too_much = inventory.post(
        f"/products/{lamp['id']}/deduct", json={"quantity": 99}, headers=admin
    )
    assert too_much.status_code == 409
    assert reserve(inventory, service, lamp["id"], 1).status_code == 201
    assert reserve(inventory, service, lamp["id"], 50).status_code == 409  # short: nothing
    assert reserve(inventory, service, desk["id"], 1).status_code == 409
    inventory.post(f"/products/{desk['id']}/restock", json={"quantity": 4}, headers=admin)
    paid = reserve_items(inventory, service, [(lamp["id"], 2), (desk["id"], 3)])
    assert paid.status_code == 201
    unpaid = reserve_items(inventory, service, [(lamp["id"], 1), (desk["id"], 1)])
    assert unpaid.status_code == 201
    released = inventory.post(
        f"/internal/reservations/{unpaid.get_json()['sale_id']}/release", headers=service
    )
    assert released.status_code == 200
    again = inventory.post(
        f"/internal/reservations/{unpaid.get_json()['sale_id']}/release", headers=service
    )
    assert again.status_code == 200  # released once: no second event
    sale_id = paid.get_json()["sale_id"]
    wallets.debit(sale_id)
    wallets.refund(sale_id)
    returned = inventory.post(
        f"/internal/reservations/{sale_id}/return",
        headers={**service, "Idempotency-Key": f"{sale_id}:return"},
    )
    assert returned.status_code == 200, returned.get_json()

    assert stock_moves(db_engine, lamp["id"]) == [
        (5, 5),  # created with 5
        (8, 3),  # restock
        (6, -2),  # deduct
        (5, -1),  # one-line reservation
        (3, -2),  # two-line reservation
        (2, -1),  # the unpaid one
        (3, 1),  # its release
        (5, 2),  # the cancelled order's return
    ]
    assert stock_moves(db_engine, desk["id"]) == [(4, 4), (1, -3), (0, -1), (1, 1), (4, 3)]

    assert inventory.delete(f"/products/{desk['id']}", headers=admin).status_code == 204
    assert inventory.delete(f"/products/{desk['id']}", headers=admin).status_code == 204
    patched = inventory.patch(f"/products/{lamp['id']}", json={"archived": True}, headers=admin)
    assert patched.status_code == 200
    restored = inventory.patch(f"/products/{lamp['id']}", json={"archived": False}, headers=admin)
    assert restored.status_code == 200
    renamed = inventory.patch(f"/products/{lamp['id']}", json={"name": "Lamp 2"}, headers=admin)
    assert renamed.status_code == 200
    assert [row.type for row in events(db_engine, desk["id"])][-1:] == [ARCHIVED]
    # Archived, restored, renamed: the rename tells nothing.
    assert [row.type for row in events(db_engine, lamp["id"])][-2:] == [ARCHIVED, RESTORED]
    assert sum(row.type == ARCHIVED for row in events(db_engine)) == 2  # once each
    # lamp: created, 8 moves, archived, restored; desk: created, 5 moves, archived
    assert len(events(db_engine)) == 11 + 7


def test_a_batch_created_catalogue_writes_its_events_in_one_statement(
    inventory_app: Flask, inventory: FlaskClient, admin: dict[str, str], db_engine: Engine
) -> None:
    products = [
        {"name": f"Tea {i}", "category": "food", "price": "2.00", "stock": i} for i in range(5)
    ]
    with statements(inventory_app) as sent:
        created = inventory.post("/products/batch", json={"products": products}, headers=admin)
    assert created.status_code == 201, created.get_json()
    assert len(outbox_writes(sent)) == 1
    rows = events(db_engine)
    assert [row.type for row in rows].count(CREATED) == 5
    assert [row.type for row in rows].count(STOCK) == 4  # Tea 0 has no stock


def test_a_rolled_back_change_writes_no_event(
    inventory_app: Flask, make_product: Callable[..., dict[str, Any]], db_engine: Engine
) -> None:
    product = make_product(stock=5)
    before = events(db_engine, product["id"])
    database = inventory_app.extensions["shop_db"]
    with database.session() as session, pytest.raises(RuntimeError), transaction(session):
        assert stock.restock(session, product["id"], 7).stock == 12  # written, with its event...
        raise RuntimeError("the caller's transaction fails afterwards")
    # ... and rolled back together.
    assert events(db_engine, product["id"]) == before
    with db_engine.connect() as conn:
        level = conn.execute(
            text("SELECT stock FROM inventory.products WHERE id = :id"), {"id": product["id"]}
        ).scalar_one()
    assert level == 5


@pytest.mark.parametrize("size", [1, 8])
def test_a_batch_of_reservations_writes_all_its_events_with_one_statement(
    size: int,
    inventory_app: Flask,
    inventory: FlaskClient,
    service: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    db_engine: Engine,
) -> None:
    plenty = make_product(stock=100)
    scarce = make_product(stock=1)
    other = make_product(stock=100)
    items = [batch_item(plenty["id"], 1 + i % 3) for i in range(size)]
    several = {
        "idempotency_key": f"{uuid.uuid4()}:reserve",
        "request": {
            "sale_id": str(uuid.uuid4()),
            "items": [
                {"product_id": plenty["id"], "quantity": 2},
                {"product_id": other["id"], "quantity": 5},
            ],
        },
    }
    items += [batch_item(scarce["id"]), batch_item(scarce["id"]), several, batch_item(987654)]
    before = len(events(db_engine))
    with statements(inventory_app) as sent:
        answer = inventory.post(BATCH, json={"items": items}, headers=service)
    assert answer.status_code == 200, answer.get_json()
    statuses = [result["status"] for result in answer.get_json()["results"]]
    assert statuses == [201] * size + [201, 409, 201, 404]
    # One INSERT into the outbox for the whole batch; no advisory lock (the rows are locked).
    writes = outbox_writes(sent)
    assert len(writes) == 1 and writes[0].lstrip().startswith("INSERT INTO inventory.outbox")
    taken = [1 + i % 3 for i in range(size)]
    expected, level = [], 100
    for quantity in [*taken, 2]:  # the batch runs its items in ascending product order
        level -= quantity
        expected.append((level, -quantity))
    assert stock_moves(db_engine, plenty["id"]) == [(100, 100), *expected]
    assert stock_moves(db_engine, scarce["id"]) == [(1, 1), (0, -1)]  # the refused one: none
    assert stock_moves(db_engine, other["id"]) == [(100, 100), (95, -5)]
    assert len(events(db_engine)) == before + size + 2 + 1

    # Retried, the batch is replayed sale by sale: nothing new is written.
    with statements(inventory_app) as sent:
        replayed = inventory.post(BATCH, json={"items": items}, headers=service)
    assert all(result["replayed"] for result in replayed.get_json()["results"])
    assert outbox_writes(sent) == []
    assert len(events(db_engine)) == before + size + 3


def test_a_one_line_reservation_adds_one_statement_and_no_lock(
    inventory_app: Flask,
    inventory: FlaskClient,
    service: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
) -> None:
    product = make_product(stock=3)
    with statements(inventory_app) as sent:
        assert reserve(inventory, service, product["id"], 1).status_code == 201
    assert len(outbox_writes(sent)) == 1


def test_the_relay_publishes_each_products_events_in_order(
    inventory: FlaskClient,
    admin: dict[str, str],
    service: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    db_engine: Engine,
    valkey: redis.Redis,
) -> None:
    first = make_product(stock=4)
    second = make_product(stock=0)
    assert reserve(inventory, service, first["id"], 3).status_code == 201
    inventory.post(f"/products/{second['id']}/restock", json={"quantity": 2}, headers=admin)
    assert inventory.delete(f"/products/{first['id']}", headers=admin).status_code == 204
    relay_everything(db_engine, OUTBOX, valkey, "inventory")
    by_product = published_by_subject(valkey, "product")
    assert [(e.type, e.sequence) for e in by_product[str(first["id"])]] == [
        (CREATED, 1),
        (STOCK, 2),
        (STOCK, 3),
        (ARCHIVED, 4),
    ]
    assert by_product[str(first["id"])][2].data == {
        "product_id": first["id"],
        "stock": 1,
        "delta": -3,
    }
    assert [e.type for e in by_product[str(second["id"])]] == [CREATED, STOCK]
    assert all(e.source == "/inventory" for found in by_product.values() for e in found)
    assert all(row.published_at is not None for row in events(db_engine))


def test_asyncapi_describes_the_product_events_sent_and_the_review_events_received(
    inventory: FlaskClient,
) -> None:
    document = inventory.get("/asyncapi.json").get_json()
    assert document["asyncapi"].startswith("3.")
    assert set(document["operations"]) == {"send_product_events", "receive_review_events"}
    assert {STOCK, CREATED, ARCHIVED, RESTORED} <= set(document["components"]["messages"])


def test_concurrent_changes_of_one_product_number_its_events_in_commit_order(
    inventory_app: Flask,
    admin: dict[str, str],
    service: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    db_engine: Engine,
) -> None:
    # No advisory lock is taken (serialized=True): the product's row lock must be enough.
    product = make_product(stock=500)["id"]

    def change(n: int) -> int:
        client = inventory_app.test_client()
        if n % 3 == 0:
            path, body = f"/products/{product}/restock", {"quantity": 2}
            return client.post(path, json=body, headers=admin).status_code
        if n % 3 == 1:
            return reserve(client, service, product, 3).status_code
        several = [batch_item(product, 1) for _ in range(3)]
        return client.post(BATCH, json={"items": several}, headers=service).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(change, range(24)))
    assert set(statuses) <= {200, 201}
    moves = stock_moves(db_engine, product)  # in id order, sequences gapless (checked there)
    level = 0
    for stock_left, delta in moves:
        level += delta
        assert stock_left == level  # each event follows the one committed before it
    assert len(moves) == 1 + 8 + 8 + 8 * 3
    with db_engine.connect() as conn:
        final = conn.execute(
            text("SELECT stock FROM inventory.products WHERE id = :id"), {"id": product}
        ).scalar_one()
    assert final == level == 500 + 8 * 2 - 8 * 3 - 8 * 3
