"""Admin stock changes: restock and deduct by conditional updates, optionally idempotent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from inventory_service.models import MAX_STOCK


def test_restock_and_deduct(
    inventory: FlaskClient, admin: dict[str, str], make_product: Callable[..., dict[str, Any]]
) -> None:
    product = make_product(stock=3)
    url = f"/products/{product['id']}"
    restocked = inventory.post(url + "/restock", json={"quantity": 7}, headers=admin)
    assert restocked.status_code == 200
    assert restocked.get_json()["stock"] == 10
    deducted = inventory.post(url + "/deduct", json={"quantity": 10}, headers=admin)
    assert deducted.status_code == 200
    assert deducted.get_json()["stock"] == 0
    assert inventory.get(url).get_json()["stock"] == 0


def test_deduct_never_goes_negative(
    inventory: FlaskClient, admin: dict[str, str], make_product: Callable[..., dict[str, Any]]
) -> None:
    product = make_product(stock=2)
    response = inventory.post(
        f"/products/{product['id']}/deduct", json={"quantity": 3}, headers=admin
    )
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["code"] == "insufficient_stock"
    assert (problem["available"], problem["requested"]) == (2, 3)
    assert inventory.get(f"/products/{product['id']}").get_json()["stock"] == 2


def test_restock_past_the_limit_is_409(
    inventory: FlaskClient,
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    db_engine: Engine,
) -> None:
    product = make_product(stock=0)
    with db_engine.begin() as conn:
        conn.execute(
            text("UPDATE inventory.products SET stock = :s WHERE id = :id"),
            {"s": MAX_STOCK - 5, "id": product["id"]},
        )
    url = f"/products/{product['id']}/restock"
    refused = inventory.post(url, json={"quantity": 6}, headers=admin)
    assert refused.status_code == 409
    assert refused.get_json()["code"] == "stock_limit"
    accepted = inventory.post(url, json={"quantity": 5}, headers=admin)
    assert accepted.status_code == 200
    assert accepted.get_json()["stock"] == MAX_STOCK


def test_stock_changes_on_unknown_products_are_404(
    inventory: FlaskClient, admin: dict[str, str]
) -> None:
    for action in ("restock", "deduct"):
        response = inventory.post(f"/products/31337/{action}", json={"quantity": 1}, headers=admin)
        assert response.status_code == 404
        assert response.get_json()["code"] == "not_found"


def test_admin_may_restock_an_archived_product(
    inventory: FlaskClient, admin: dict[str, str], make_product: Callable[..., dict[str, Any]]
) -> None:
    product = make_product(stock=1)
    inventory.delete(f"/products/{product['id']}", headers=admin)
    response = inventory.post(
        f"/products/{product['id']}/restock", json={"quantity": 1}, headers=admin
    )
    assert response.status_code == 200
    assert response.get_json()["stock"] == 2


def test_restock_with_an_idempotency_key_happens_once(
    inventory: FlaskClient, admin: dict[str, str], make_product: Callable[..., dict[str, Any]]
) -> None:
    product = make_product(stock=0)
    url = f"/products/{product['id']}/restock"
    headers = {**admin, "Idempotency-Key": "restock-1"}
    first = inventory.post(url, json={"quantity": 5}, headers=headers)
    again = inventory.post(url, json={"quantity": 5}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.get_json() == first.get_json()
    assert inventory.get(f"/products/{product['id']}").get_json()["stock"] == 5
    other = inventory.post(url, json={"quantity": 6}, headers=headers)
    assert other.status_code == 422
    assert other.get_json()["code"] == "idempotency_key_reused"


def test_refused_deduct_is_replayed_as_refused(
    inventory: FlaskClient, admin: dict[str, str], make_product: Callable[..., dict[str, Any]]
) -> None:
    product = make_product(stock=1)
    url = f"/products/{product['id']}"
    headers = {**admin, "Idempotency-Key": "deduct-1"}
    first = inventory.post(url + "/deduct", json={"quantity": 2}, headers=headers)
    assert first.status_code == 409
    inventory.post(url + "/restock", json={"quantity": 10}, headers=admin)
    again = inventory.post(url + "/deduct", json={"quantity": 2}, headers=headers)
    assert again.status_code == 409
    assert again.headers["Idempotent-Replayed"] == "true"
    assert inventory.get(url).get_json()["stock"] == 11
