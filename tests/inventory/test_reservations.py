"""Reservations for sales: take stock once, replay, conflicts, release exactly once, audits."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from tests.support.identity import Identity, bearer
from tests.support.inventory import reserve, stock_of


def test_reservation_takes_stock_and_returns_price_and_name(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
) -> None:
    product = make_product(name="Headphones", price="79.90", stock=5)
    sale_id = str(uuid.uuid4())
    response = reserve(inventory, service, product["id"], 2, sale_id=sale_id)
    assert response.status_code == 201
    body = response.get_json()
    assert {k: body[k] for k in ("sale_id", "product_id", "quantity", "unit_price", "name")} == {
        "sale_id": sale_id,
        "product_id": product["id"],
        "quantity": 2,
        "unit_price": "79.90",
        "name": "Headphones",
    }
    assert body["status"] == "reserved"
    assert body["released_at"] is None
    assert body["returned_at"] is None
    assert body["reserved_by"] == "sales"
    assert body["items"] == [
        {
            "product_id": product["id"],
            "name": "Headphones",
            "quantity": 2,
            "unit_price": "79.90",
            "line_total": "159.80",
        }
    ]
    assert body["total"] == "159.80"
    assert stock_of(inventory, product["id"], admin) == 3


def test_reservation_keeps_the_price_of_its_time(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
) -> None:
    product = make_product(price="10.00", stock=5)
    sale_id = reserve(inventory, service, product["id"]).get_json()["sale_id"]
    inventory.patch(f"/products/{product['id']}", json={"price": "99.00"}, headers=admin)
    stored = inventory.get(f"/internal/reservations/{sale_id}", headers=service).get_json()
    assert stored["unit_price"] == "10.00"


def test_insufficient_stock_is_409_and_takes_nothing(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    count_rows: Callable[[str], int],
) -> None:
    product = make_product(stock=2)
    response = reserve(inventory, service, product["id"], 3)
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["code"] == "insufficient_stock"
    assert problem["products"] == [{"product_id": product["id"], "available": 2, "requested": 3}]
    assert (problem["available"], problem["requested"]) == (2, 3)  # the one-line members stay
    assert stock_of(inventory, product["id"], admin) == 2
    assert count_rows("reservations") == 0
    assert count_rows("idempotency_keys") == 1  # the refusal is the key's stored answer


def test_unknown_or_archived_product_is_404(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    count_rows: Callable[[str], int],
) -> None:
    unknown = reserve(inventory, service, 987654)
    assert unknown.status_code == 404
    assert unknown.get_json()["code"] == "not_found"
    assert unknown.get_json()["product_ids"] == [987654]
    product = make_product(stock=5)
    inventory.delete(f"/products/{product['id']}", headers=admin)
    archived = reserve(inventory, service, product["id"])
    assert archived.status_code == 404
    assert stock_of(inventory, product["id"], admin) == 5
    assert count_rows("reservations") == 0


def test_replay_with_the_same_key_takes_stock_once(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    count_rows: Callable[[str], int],
) -> None:
    product = make_product(stock=5)
    sale_id = str(uuid.uuid4())
    first = reserve(inventory, service, product["id"], 2, sale_id=sale_id, key="k-1")
    again = reserve(inventory, service, product["id"], 2, sale_id=sale_id, key="k-1")
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert stock_of(inventory, product["id"], admin) == 3
    assert count_rows("reservations") == 1


def test_same_key_with_another_body_is_422(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
) -> None:
    product = make_product(stock=5)
    sale_id = str(uuid.uuid4())
    reserve(inventory, service, product["id"], 1, sale_id=sale_id, key="k-2")
    other = reserve(inventory, service, product["id"], 2, sale_id=sale_id, key="k-2")
    assert other.status_code == 422
    assert other.get_json()["code"] == "idempotency_key_reused"
    assert stock_of(inventory, product["id"], admin) == 4


def test_refusal_is_replayed_even_after_a_restock(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
) -> None:
    product = make_product(stock=0)
    sale_id = str(uuid.uuid4())
    first = reserve(inventory, service, product["id"], 1, sale_id=sale_id, key="k-3")
    assert first.status_code == 409
    inventory.post(f"/products/{product['id']}/restock", json={"quantity": 5}, headers=admin)
    again = reserve(inventory, service, product["id"], 1, sale_id=sale_id, key="k-3")
    assert again.status_code == 409
    assert again.headers["Idempotent-Replayed"] == "true"
    assert stock_of(inventory, product["id"], admin) == 5


def test_second_reservation_for_a_sale_is_409(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
) -> None:
    product = make_product(stock=5)
    sale_id = str(uuid.uuid4())
    assert reserve(inventory, service, product["id"], sale_id=sale_id, key="a").status_code == 201
    second = reserve(inventory, service, product["id"], 2, sale_id=sale_id, key="b")
    assert second.status_code == 409
    assert second.get_json()["code"] == "already_reserved"
    assert stock_of(inventory, product["id"], admin) == 4


def test_reservation_race_on_the_sale_id_is_caught_by_the_key(
    inventory_app: Any,
    make_product: Callable[..., dict[str, Any]],
    db_engine: Engine,
) -> None:
    """Two transactions reserving one sale: the primary key refuses the second, stock restored.

    The second transaction takes the stock before it meets the first one's
    row, as it would had both run at once; rolling back gives the stock back.
    """
    from inventory_service import reservations
    from shopkit.db import get_database
    from shopkit.errors import Conflict

    product = make_product(stock=5)
    sale_id = uuid.uuid4()
    with inventory_app.app_context():
        database = get_database()
        with database.session() as first, database.session() as second:
            reservations.reserve(first, sale_id, [(product["id"], 1)], "sales")
            first.commit()
            with pytest.raises(Conflict) as caught:
                reservations.reserve(second, sale_id, [(product["id"], 1)], "sales")
            second.rollback()
    assert caught.value.code == "already_reserved"
    with db_engine.connect() as conn:
        left = conn.execute(
            text("SELECT stock FROM inventory.products WHERE id = :id"), {"id": product["id"]}
        ).scalar_one()
    assert left == 4


def test_release_restores_stock_exactly_once(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
) -> None:
    product = make_product(stock=5)
    sale_id = reserve(inventory, service, product["id"], 3).get_json()["sale_id"]
    assert stock_of(inventory, product["id"], admin) == 2
    url = f"/internal/reservations/{sale_id}/release"
    first = inventory.post(url, headers={**service, "Idempotency-Key": f"{sale_id}:release"})
    assert first.status_code == 200
    assert first.get_json()["status"] == "released"
    assert first.get_json()["released_at"]
    assert stock_of(inventory, product["id"], admin) == 5
    second = inventory.post(url, headers=service)  # another key (none): still only once
    assert second.status_code == 200
    assert second.get_json()["status"] == "released"
    assert second.get_json()["released_at"] == first.get_json()["released_at"]
    assert stock_of(inventory, product["id"], admin) == 5
    replay = inventory.post(url, headers={**service, "Idempotency-Key": f"{sale_id}:release"})
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert stock_of(inventory, product["id"], admin) == 5


def test_release_puts_stock_back_on_an_archived_product(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
) -> None:
    product = make_product(stock=5)
    sale_id = reserve(inventory, service, product["id"], 2).get_json()["sale_id"]
    inventory.delete(f"/products/{product['id']}", headers=admin)
    response = inventory.post(f"/internal/reservations/{sale_id}/release", headers=service)
    assert response.status_code == 200
    assert stock_of(inventory, product["id"], admin) == 5


def test_released_sale_cannot_reserve_again(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
) -> None:
    product = make_product(stock=5)
    sale_id = reserve(inventory, service, product["id"], key="r-1").get_json()["sale_id"]
    inventory.post(f"/internal/reservations/{sale_id}/release", headers=service)
    again = reserve(inventory, service, product["id"], sale_id=sale_id, key="r-2")
    assert again.status_code == 409
    assert again.get_json()["code"] == "already_reserved"
    assert stock_of(inventory, product["id"], admin) == 5


def test_release_of_an_unknown_sale_is_404(inventory: FlaskClient, service: dict[str, str]) -> None:
    response = inventory.post(f"/internal/reservations/{uuid.uuid4()}/release", headers=service)
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"
    assert (
        inventory.post("/internal/reservations/not-a-uuid/release", headers=service).status_code
        == 404
    )


def test_release_past_the_stock_limit_is_503_not_stored_and_retried_later(
    inventory: FlaskClient,
    service: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    db_engine: Engine,
) -> None:
    """A compensation cannot be refused for good: a release that finds no room is 503, which
    is not stored under its key, so the saga's retry with that key succeeds once there is room.
    (A stored 409 would be replayed forever, leaving the reservation and its sale stuck.)"""
    from inventory_service.models import MAX_STOCK

    product = make_product(stock=5)
    sale_id = reserve(inventory, service, product["id"], 3).get_json()["sale_id"]

    def set_stock(stock: int) -> None:
        with db_engine.begin() as conn:
            conn.execute(
                text("UPDATE inventory.products SET stock = :s WHERE id = :id"),
                {"s": stock, "id": product["id"]},
            )

    set_stock(MAX_STOCK - 1)
    url = f"/internal/reservations/{sale_id}/release"
    key = {**service, "Idempotency-Key": f"{sale_id}:release"}
    response = inventory.post(url, headers=key)
    assert response.status_code == 503
    assert response.get_json()["code"] == "stock_limit"
    assert response.headers["Retry-After"]
    stored = inventory.get(f"/internal/reservations/{sale_id}", headers=service).get_json()
    assert stored["status"] == "reserved"

    set_stock(10)
    retried = inventory.post(url, headers=key)
    assert retried.status_code == 200
    assert "Idempotent-Replayed" not in retried.headers
    assert retried.get_json()["status"] == "released"
    with db_engine.connect() as conn:
        stock = conn.execute(
            text("SELECT stock FROM inventory.products WHERE id = :id"), {"id": product["id"]}
        ).scalar_one()
    assert stock == 13


def test_reading_reservations(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
) -> None:
    first = make_product(stock=10)
    second = make_product(stock=10)
    sales = [reserve(inventory, service, first["id"]).get_json()["sale_id"] for _ in range(3)]
    sales.append(reserve(inventory, service, second["id"]).get_json()["sale_id"])
    inventory.post(f"/internal/reservations/{sales[0]}/release", headers=service)
    for headers in (service, admin):
        one = inventory.get(f"/internal/reservations/{sales[1]}", headers=headers)
        assert one.status_code == 200
        assert one.get_json()["sale_id"] == sales[1]
        everything = inventory.get("/internal/reservations", headers=headers).get_json()
        assert everything["total"] == 4
        assert [r["sale_id"] for r in everything["items"]] == sales[::-1]  # newest first
    released = inventory.get("/internal/reservations?status=released", headers=admin).get_json()
    assert [r["sale_id"] for r in released["items"]] == [sales[0]]
    reserved_first = inventory.get(
        f"/internal/reservations?status=reserved&product_id={first['id']}&page_size=1",
        headers=admin,
    ).get_json()
    assert reserved_first["total"] == 2
    assert len(reserved_first["items"]) == 1
    missing = inventory.get(f"/internal/reservations/{uuid.uuid4()}", headers=admin)
    assert missing.status_code == 404


def test_reservation_needs_an_idempotency_key(
    inventory: FlaskClient,
    service: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    count_rows: Callable[[str], int],
) -> None:
    product = make_product(stock=5)
    response = inventory.post(
        "/internal/reservations",
        json={"sale_id": str(uuid.uuid4()), "product_id": product["id"], "quantity": 1},
        headers=service,
    )
    assert response.status_code == 400
    assert response.get_json()["code"] == "idempotency_key_required"
    assert count_rows("reservations") == 0


def test_internal_endpoints_refuse_other_roles(
    inventory: FlaskClient,
    identity: Identity,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    count_rows: Callable[[str], int],
) -> None:
    product = make_product(stock=5)
    sale_id = reserve(inventory, service, product["id"]).get_json()["sale_id"]
    customer = bearer(identity.new_customer()[1])
    body = {"sale_id": str(uuid.uuid4()), "product_id": product["id"], "quantity": 1}
    writes = [
        ("/internal/reservations", body),
        (f"/internal/reservations/{sale_id}/release", None),
        (f"/internal/reservations/{sale_id}/return", None),
    ]
    for path, json in writes:
        assert inventory.post(path, json=json).status_code == 401
        for headers in (customer, admin):
            response = inventory.post(path, json=json, headers={**headers, "Idempotency-Key": "x"})
            assert response.status_code == 403, path
    for path in (f"/internal/reservations/{sale_id}", "/internal/reservations"):
        assert inventory.get(path).status_code == 401
        assert inventory.get(path, headers=customer).status_code == 403
    assert count_rows("reservations") == 1
    stored = inventory.get(f"/internal/reservations/{sale_id}", headers=admin).get_json()
    assert stored["status"] == "reserved"
    assert stock_of(inventory, product["id"], admin) == 4
