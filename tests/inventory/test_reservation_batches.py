"""``POST /internal/reservations/batch``: many sales' reservations in one transaction, each
answered as its single call would be, under its own key."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.identity import Identity, bearer
from tests.support.inventory import BATCH, batch_item, reserve, stock_of


def send(client: FlaskClient, headers: dict[str, str], items: list[dict[str, Any]]) -> Any:
    return client.post(BATCH, json={"items": items}, headers=headers)


def test_a_batch_answers_each_sale_and_a_refusal_never_fails_its_neighbours(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    count_rows: Callable[[str], int],
) -> None:
    scarce = make_product(price="5.00", stock=1)
    plenty = make_product(price="2.50", stock=10, name="Plenty")
    items = [
        batch_item(plenty["id"], 2),
        batch_item(scarce["id"], 1),
        batch_item(scarce["id"], 1),  # the second unit of a stock of one
        batch_item(987654, 1),  # no such product
        batch_item(plenty["id"], 3),
    ]
    response = send(inventory, service, items)
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert [r["idempotency_key"] for r in results] == [i["idempotency_key"] for i in items]
    assert [r["status"] for r in results] == [201, 201, 409, 404, 201]
    assert results[2]["body"]["code"] == "insufficient_stock"
    assert results[3]["body"]["code"] == "not_found"
    assert results[0]["body"]["unit_price"] == "2.50"
    assert results[0]["body"]["sale_id"] == items[0]["request"]["sale_id"]
    assert not any(r["replayed"] for r in results)
    assert stock_of(inventory, plenty["id"], admin) == 5
    assert stock_of(inventory, scarce["id"], admin) == 0
    assert count_rows("reservations") == 3
    assert count_rows("idempotency_keys") == 5  # refusals are stored too


def test_a_retried_batch_is_replayed_sale_by_sale_and_alone_as_well(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    count_rows: Callable[[str], int],
) -> None:
    product = make_product(stock=3)
    items = [batch_item(product["id"]) for _ in range(4)]
    first = send(inventory, service, items).get_json()["results"]
    product_after = stock_of(inventory, product["id"], admin)
    again = send(inventory, service, items).get_json()["results"]
    assert [(r["status"], r["body"]) for r in again] == [(r["status"], r["body"]) for r in first]
    assert all(r["replayed"] for r in again)
    assert [r["status"] for r in first] == [201, 201, 201, 409]
    assert stock_of(inventory, product["id"], admin) == product_after == 0
    # Recovery drives a sale alone through the single endpoint with the same key: a replay.
    sale = items[1]["request"]["sale_id"]
    alone = reserve(inventory, service, product["id"], sale_id=sale)
    assert alone.status_code == 201
    assert alone.headers["Idempotent-Replayed"] == "true"
    assert alone.get_json() == first[1]["body"]
    assert count_rows("reservations") == 3


def test_the_same_sale_in_two_batches_or_alone_acts_once(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    count_rows: Callable[[str], int],
) -> None:
    product = make_product(stock=10)
    shared = batch_item(product["id"], 2)
    first = send(inventory, service, [shared, batch_item(product["id"])]).get_json()["results"]
    second = send(inventory, service, [batch_item(product["id"]), shared]).get_json()["results"]
    assert first[0]["status"] == second[1]["status"] == 201
    assert second[1]["replayed"] and second[1]["body"] == first[0]["body"]
    # The same sale under another key is the sale's second reservation: refused.
    other_key = {**shared, "idempotency_key": "another-key"}
    third = send(inventory, service, [other_key, batch_item(product["id"])]).get_json()["results"]
    assert (third[0]["status"], third[0]["body"]["code"]) == (409, "already_reserved")
    assert third[1]["status"] == 201
    assert stock_of(inventory, product["id"], admin) == 10 - 2 - 1 - 1 - 1
    assert count_rows("reservations") == 4


def test_a_key_first_used_alone_replays_in_a_batch_and_a_changed_body_is_refused(
    inventory: FlaskClient,
    service: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
) -> None:
    product = make_product(stock=10)
    sale = str(uuid.uuid4())
    assert reserve(inventory, service, product["id"], 2, sale_id=sale).status_code == 201
    results = send(
        inventory, service, [batch_item(product["id"], 2, sale), batch_item(product["id"], 3)]
    ).get_json()["results"]
    assert results[0]["replayed"] and results[0]["status"] == 201
    changed = send(inventory, service, [batch_item(product["id"], 5, sale)]).get_json()["results"]
    assert (changed[0]["status"], changed[0]["body"]["code"]) == (422, "idempotency_key_reused")


def test_concurrent_batches_over_the_same_products_never_oversell(
    inventory_app: Flask,
    identity: Identity,
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    count_rows: Callable[[str], int],
) -> None:
    """Eight batches at once over three products listed in different orders: every unit
    is taken at most once, and each batch answers every sale."""
    products = [make_product(stock=12)["id"] for _ in range(3)]
    headers = bearer(identity.service_token("sales"))
    batches = [
        [batch_item(products[(b + i) % 3]) for i in range(6)] for b in range(8)
    ]  # 48 units wanted, 36 in stock

    def run(items: list[dict[str, Any]]) -> list[int]:
        answer = send(inventory_app.test_client(), headers, items)
        assert answer.status_code == 200, answer.get_json()
        return [r["status"] for r in answer.get_json()["results"]]

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = [s for batch in pool.map(run, batches) for s in batch]
    assert statuses.count(201) == 36 and statuses.count(409) == 12, statuses
    client = inventory_app.test_client()
    assert [stock_of(client, p, admin) for p in products] == [0, 0, 0]
    assert count_rows("reservations") == 36


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"items": []}, 422),
        ({"items": "x"}, 422),
        ({"items": [{"request": {"sale_id": str(uuid.uuid4()), "product_id": 1}}]}, 422),
        ({"items": [{"idempotency_key": "has space", "request": {}}]}, 422),
        ({"items": [{**batch_item(1), "idempotency_key": "k"}, {**batch_item(2), "idempotency_key": "k"}]}, 422),
        ({"items": [batch_item(1, sale_id="6d0c5a56-0000-4000-8000-000000000001"),
                    batch_item(2, sale_id="6d0c5a56-0000-4000-8000-000000000001")]}, 422),
        ({"items": [batch_item(1) for _ in range(101)]}, 422),
        ({"items": [batch_item(1, quantity=0)]}, 422),
    ],
)  # fmt: skip
def test_bad_batches_are_refused_whole_and_write_nothing(
    inventory: FlaskClient,
    service: dict[str, str],
    count_rows: Callable[[str], int],
    body: dict[str, Any],
    status: int,
) -> None:
    response = inventory.post(BATCH, json=body, headers=service)
    assert response.status_code == status, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "validation_error"
    assert count_rows("reservations") == count_rows("idempotency_keys") == 0


def test_only_the_sales_service_may_send_a_batch(
    inventory: FlaskClient,
    identity: Identity,
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    count_rows: Callable[[str], int],
) -> None:
    product = make_product(stock=5)
    body = {"items": [batch_item(product["id"])]}
    _, customer = identity.new_customer()
    callers = {
        "anonymous": ({}, 401),
        "customer": (bearer(customer), 403),
        "admin": (admin, 403),
        "reviews": (bearer(identity.service_token("reviews")), 403),
        "customers": (bearer(identity.service_token("customers")), 403),
    }
    for name, (headers, status) in callers.items():
        response = inventory.post(BATCH, json=body, headers=headers)
        assert response.status_code == status, (name, response.get_json())
        assert response.mimetype == "application/problem+json"
    assert count_rows("reservations") == 0


def test_concurrent_batches_of_several_line_orders_queue_instead_of_deadlocking(
    inventory_app: Flask,
    identity: Identity,
    make_product: Callable[..., dict[str, Any]],
) -> None:
    """Two batches whose orders cross (one holds p5 and wants p1, the other holds p1 and
    wants p5) would deadlock if each order locked only its own rows: the batch locks every
    product it names first, in ascending order, so every batch completes."""
    p = [make_product(stock=1000)["id"] for _ in range(6)]

    def order(*products: int) -> dict[str, Any]:
        sale = str(uuid.uuid4())
        lines = [{"product_id": product, "quantity": 1} for product in products]
        return {"idempotency_key": f"{sale}:reserve", "request": {"sale_id": sale, "items": lines}}

    headers = bearer(identity.service_token("sales"))

    def run(items: list[dict[str, Any]]) -> int:
        return int(send(inventory_app.test_client(), headers, items).status_code)

    statuses = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(6):
            crossing = [
                [order(p[0], p[5]), order(p[1], p[4])],
                [order(p[1], p[2]), order(p[3], p[5])],
            ]
            statuses += list(pool.map(run, crossing))
    assert statuses == [200] * 12, statuses
