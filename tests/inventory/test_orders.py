"""Multi-line reservations: all lines or none, prices per line, every refusal named, bad input."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.support.inventory import new_sale_id, reserve_items


def test_every_line_is_reserved_with_its_own_price(
    inventory: FlaskClient,
    service: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    stocks: Callable[[list[int]], list[int]],
) -> None:
    beans = make_product(name="Beans", price="12.50", stock=10)
    mug = make_product(name="Mug", price="7.99", stock=5)
    kettle = make_product(name="Kettle", price="49.00", stock=1)
    sale_id = new_sale_id()
    # Given out of id order: the answer lists lines by product id.
    response = reserve_items(
        inventory, service, [(kettle["id"], 1), (beans["id"], 3), (mug["id"], 2)], sale_id=sale_id
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["sale_id"] == sale_id
    assert body["status"] == "reserved"
    assert body["items"] == [
        {
            "product_id": beans["id"],
            "name": "Beans",
            "quantity": 3,
            "unit_price": "12.50",
            "line_total": "37.50",
        },
        {
            "product_id": mug["id"],
            "name": "Mug",
            "quantity": 2,
            "unit_price": "7.99",
            "line_total": "15.98",
        },
        {
            "product_id": kettle["id"],
            "name": "Kettle",
            "quantity": 1,
            "unit_price": "49.00",
            "line_total": "49.00",
        },
    ]
    assert body["total"] == "102.48"
    # The one-line members are null for several lines.
    assert [body[k] for k in ("product_id", "quantity", "unit_price", "name")] == [None] * 4
    assert stocks([beans["id"], mug["id"], kettle["id"]]) == [7, 3, 0]
    stored = inventory.get(f"/internal/reservations/{sale_id}", headers=service)
    assert stored.get_json() == body


def test_one_short_line_refuses_the_whole_order(
    inventory: FlaskClient,
    service: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    stocks: Callable[[list[int]], list[int]],
    count_rows: Callable[[str], int],
) -> None:
    plenty = [make_product(stock=50) for _ in range(3)]
    short = make_product(stock=1)
    lines = [(p["id"], 2) for p in plenty] + [(short["id"], 2)]
    response = reserve_items(inventory, service, lines)
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["code"] == "insufficient_stock"
    assert problem["products"] == [{"product_id": short["id"], "available": 1, "requested": 2}]
    assert f"product {short['id']}" in problem["detail"]
    assert "available" not in problem  # the one-line members are for one-line requests
    assert stocks([p["id"] for p in plenty] + [short["id"]]) == [50, 50, 50, 1]
    assert count_rows("reservations") == 0
    assert count_rows("reservation_lines") == 0


def test_every_short_line_is_named(
    inventory: FlaskClient,
    service: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    stocks: Callable[[list[int]], list[int]],
) -> None:
    first = make_product(stock=0)
    fine = make_product(stock=9)
    second = make_product(stock=4)
    response = reserve_items(
        inventory, service, [(second["id"], 5), (fine["id"], 9), (first["id"], 1)]
    )
    assert response.status_code == 409
    problem = response.get_json()
    assert problem["products"] == [
        {"product_id": first["id"], "available": 0, "requested": 1},
        {"product_id": second["id"], "available": 4, "requested": 5},
    ]
    assert f"product {first['id']}" in problem["detail"]
    assert f"product {second['id']}" in problem["detail"]
    assert f"product {fine['id']}" not in problem["detail"]
    assert stocks([first["id"], fine["id"], second["id"]]) == [0, 9, 4]


def test_unknown_and_archived_products_are_404_naming_them(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    stocks: Callable[[list[int]], list[int]],
    count_rows: Callable[[str], int],
) -> None:
    fine = make_product(stock=5)
    archived = make_product(stock=5)
    short = make_product(stock=0)
    inventory.delete(f"/products/{archived['id']}", headers=admin)
    lines = [(fine["id"], 1), (archived["id"], 1), (987654, 1), (short["id"], 1)]
    response = reserve_items(inventory, service, lines)
    assert response.status_code == 404
    problem = response.get_json()
    assert problem["code"] == "not_found"
    assert problem["product_ids"] == sorted([archived["id"], 987654])
    assert stocks([fine["id"], archived["id"]]) == [5, 5]
    assert count_rows("reservations") == 0


def _items(*lines: tuple[Any, Any]) -> list[dict[str, Any]]:
    return [{"product_id": p, "quantity": q} for p, q in lines]


BAD_ORDERS = {
    "no lines": {"items": []},
    "51 lines": {"items": _items(*((i, 1) for i in range(1, 52)))},
    "duplicate products": {"items": _items((1, 1), (2, 1), (1, 2))},
    "quantity 0": {"items": _items((1, 1), (2, 0))},
    "quantity over 1000": {"items": _items((1, 1), (2, 1001))},
    "huge quantity": {"items": _items((1, 1), (2, 2**63))},
    "negative quantity": {"items": _items((1, -1))},
    "quantity as a string": {"items": _items((1, "1"))},
    "product id 0": {"items": _items((0, 1))},
    "product id past bigint": {"items": _items((2**63, 1))},
    "a line without quantity": {"items": [{"product_id": 1}]},
    "items and product_id": {"items": _items((1, 1)), "product_id": 2, "quantity": 1},
    "neither form": {},
    "product_id without quantity": {"product_id": 1},
    "items not a list": {"items": {"product_id": 1, "quantity": 1}},
}


@pytest.mark.parametrize("body", BAD_ORDERS.values(), ids=BAD_ORDERS.keys())
def test_bad_orders_are_422_and_change_nothing(
    inventory: FlaskClient,
    service: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    stocks: Callable[[list[int]], list[int]],
    count_rows: Callable[[str], int],
    body: dict[str, Any],
) -> None:
    products = [make_product(stock=5)["id"] for _ in range(2)]
    body = copy.deepcopy(body)
    # Point the lines at the real products where they name ids 1 and 2.
    for line in body["items"] if isinstance(body.get("items"), list) else []:
        if line.get("product_id") in (1, 2):
            line["product_id"] = products[line["product_id"] - 1]
    sale_id = new_sale_id()
    response = inventory.post(
        "/internal/reservations",
        json={"sale_id": sale_id, **body},
        headers={**service, "Idempotency-Key": f"{sale_id}:reserve"},
    )
    assert response.status_code == 422, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "validation_error"
    assert stocks(products) == [5, 5]
    assert count_rows("reservations") == 0
    assert count_rows("idempotency_keys") == 0


def test_fifty_lines_are_accepted(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    count_rows: Callable[[str], int],
) -> None:
    created = inventory.post(
        "/products/batch",
        json={
            "products": [
                {"name": f"Item {i}", "category": "food", "price": "1.00", "stock": 2}
                for i in range(50)
            ]
        },
        headers=admin,
    ).get_json()["items"]
    response = reserve_items(inventory, service, [(p["id"], 2) for p in created])
    assert response.status_code == 201
    assert len(response.get_json()["items"]) == 50
    assert response.get_json()["total"] == "100.00"
    assert count_rows("reservation_lines") == 50


def test_a_retry_with_the_same_key_replays_and_takes_stock_once(
    inventory: FlaskClient,
    service: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    stocks: Callable[[list[int]], list[int]],
    count_rows: Callable[[str], int],
) -> None:
    first, second = make_product(stock=5), make_product(stock=5)
    sale_id = new_sale_id()
    lines = [(first["id"], 2), (second["id"], 3)]
    answers = [reserve_items(inventory, service, lines, sale_id=sale_id) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert "Idempotent-Replayed" not in answers[0].headers
    assert all(a.headers["Idempotent-Replayed"] == "true" for a in answers[1:])
    assert all(a.get_json() == answers[0].get_json() for a in answers[1:])
    assert stocks([first["id"], second["id"]]) == [3, 2]
    assert count_rows("reservation_lines") == 2
    again = reserve_items(inventory, service, lines, sale_id=sale_id, key="another-key")
    assert again.status_code == 409
    assert again.get_json()["code"] == "already_reserved"
    assert stocks([first["id"], second["id"]]) == [3, 2]


def test_a_refused_order_is_replayed_refused_after_a_restock(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    stocks: Callable[[list[int]], list[int]],
) -> None:
    first, second = make_product(stock=5), make_product(stock=0)
    sale_id = new_sale_id()
    lines = [(first["id"], 1), (second["id"], 1)]
    assert reserve_items(inventory, service, lines, sale_id=sale_id).status_code == 409
    inventory.post(f"/products/{second['id']}/restock", json={"quantity": 5}, headers=admin)
    replay = reserve_items(inventory, service, lines, sale_id=sale_id)
    assert replay.status_code == 409
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert stocks([first["id"], second["id"]]) == [5, 5]


def test_listing_matches_any_line_and_every_status(
    inventory: FlaskClient,
    service: dict[str, str],
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
) -> None:
    a, b, c = (make_product(stock=10)["id"] for _ in range(3))
    both = reserve_items(inventory, service, [(a, 1), (b, 1)]).get_json()["sale_id"]
    only_c = reserve_items(inventory, service, [(c, 2)]).get_json()["sale_id"]
    with_b = inventory.get(f"/internal/reservations?product_id={b}", headers=admin).get_json()
    assert [r["sale_id"] for r in with_b["items"]] == [both]
    assert [line["product_id"] for line in with_b["items"][0]["items"]] == sorted([a, b])
    everything = inventory.get("/internal/reservations", headers=admin).get_json()
    assert [r["sale_id"] for r in everything["items"]] == [only_c, both]
    assert everything["items"][0]["product_id"] == c  # a one-line reservation keeps its fields
    returned = inventory.get("/internal/reservations?status=returned", headers=admin)
    assert returned.status_code == 200
    assert returned.get_json()["total"] == 0


def test_products_by_ids(
    inventory: FlaskClient,
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
) -> None:
    beans = make_product(name="Beans", category="food", stock=3)
    shirt = make_product(name="Shirt", category="clothes", stock=0)
    archived = make_product(name="Old beans", category="food")
    make_product(name="Not asked for")
    inventory.delete(f"/products/{archived['id']}", headers=admin)
    ids = f"{shirt['id']},{beans['id']},{archived['id']},987654,{beans['id']}"
    page = inventory.get(f"/products?ids={ids}&sort=name").get_json()
    assert [p["id"] for p in page["items"]] == [beans["id"], shirt["id"]]
    assert page["total"] == 2
    assert page["items"][0]["stock"] == 3
    food = inventory.get(f"/products?ids={ids}&category=food").get_json()
    assert [p["id"] for p in food["items"]] == [beans["id"]]
    searched = inventory.get(f"/products?ids={ids}&q=bea").get_json()
    assert [p["id"] for p in searched["items"]] == [beans["id"]]
    assert inventory.get(f"/products?q=bea&ids={shirt['id']}").get_json()["total"] == 0
    hundred = ",".join(str(i) for i in range(1, 101))
    assert inventory.get(f"/products?ids={hundred}&page_size=100").status_code == 200


@pytest.mark.parametrize(
    "ids",
    ["", "abc", "1,,2", "0", "-1", "1.5", "1;2", str(2**63), "9" * 30, ",".join(["1"] * 101)],
)
def test_bad_product_ids_are_422(inventory: FlaskClient, ids: str) -> None:
    response = inventory.get("/products", query_string={"ids": ids})
    assert response.status_code == 422, ids
    assert response.mimetype == "application/problem+json"
    assert "ids" in response.get_json()["errors"]


def test_the_single_line_reservation_race_still_answers_already_reserved(
    inventory: FlaskClient,
    service: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    stocks: Callable[[list[int]], list[int]],
) -> None:
    """A sale reserved with one line cannot reserve again with several."""
    first, second = make_product(stock=5), make_product(stock=5)
    sale_id = str(uuid.uuid4())
    assert reserve_items(inventory, service, [(first["id"], 1)], sale_id=sale_id).status_code == 201
    again = reserve_items(
        inventory, service, [(first["id"], 1), (second["id"], 1)], sale_id=sale_id, key="k2"
    )
    assert again.status_code == 409
    assert again.get_json()["code"] == "already_reserved"
    assert stocks([first["id"], second["id"]]) == [4, 5]
