"""The catalogue: create, read, search, sort, paginate, change, archive, batch, and roles."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from tests.support.products import product_payload

PRODUCT_KEYS = {
    "id", "name", "category", "price", "description", "stock", "archived",
    "created_at", "updated_at", "rating",
}  # fmt: skip


def test_create_returns_the_product(inventory: FlaskClient, admin: dict[str, str]) -> None:
    response = inventory.post(
        "/products", json=product_payload(name="  Green tea  ", price="3.5"), headers=admin
    )
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == PRODUCT_KEYS
    assert body["name"] == "Green tea"  # trimmed
    assert body["price"] == "3.50"  # money is a decimal string with two places
    assert body["stock"] == 10
    assert body["archived"] is False
    assert body["rating"] == {"average": None, "count": 0}  # no approved review yet
    assert isinstance(body["id"], int)
    assert response.headers["Location"] == f"/products/{body['id']}"


def test_a_reservation_answers_with_its_location_first_time_and_on_replay(
    inventory: FlaskClient, make_product: Any, service: dict[str, str]
) -> None:
    product = make_product(stock=5)
    sale_id = str(uuid.uuid4())
    body = {"sale_id": sale_id, "product_id": product["id"], "quantity": 1}
    headers = {**service, "Idempotency-Key": f"{sale_id}:reserve"}
    first = inventory.post("/internal/reservations", json=body, headers=headers)
    again = inventory.post("/internal/reservations", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.headers["Location"] == again.headers["Location"]
    assert first.headers["Location"] == f"/internal/reservations/{sale_id}"
    assert again.get_data() == first.get_data()
    assert inventory.get(first.headers["Location"], headers=service).status_code == 200


def test_description_and_stock_are_optional(inventory: FlaskClient, admin: dict[str, str]) -> None:
    body = {"name": "Plain mug", "category": "accessories", "price": "4.00"}
    response = inventory.post("/products", json=body, headers=admin)
    assert response.status_code == 201
    assert response.get_json()["description"] == ""
    assert response.get_json()["stock"] == 0


def test_anyone_reads_a_product(
    inventory: FlaskClient, make_product: Callable[..., dict[str, Any]]
) -> None:
    product = make_product()
    response = inventory.get(f"/products/{product['id']}")
    assert response.status_code == 200
    assert response.get_json() == product


def test_unknown_product_is_404_problem(inventory: FlaskClient) -> None:
    for path in ("/products/999", f"/products/{2**63}", f"/products/{10**30}"):
        response = inventory.get(path)
        assert response.status_code == 404, path
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["code"] == "not_found"


def test_invalid_token_when_reading_a_product_is_401(
    inventory: FlaskClient, make_product: Callable[..., dict[str, Any]]
) -> None:
    product = make_product()
    response = inventory.get(
        f"/products/{product['id']}", headers={"Authorization": "Bearer garbage"}
    )
    assert response.status_code == 401
    assert response.get_json()["code"] == "invalid_token"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/products", product_payload()),
        ("post", "/products/batch", {"products": [product_payload()]}),
        ("patch", "/products/{id}", {"price": "1.00"}),
        ("delete", "/products/{id}", None),
        ("post", "/products/{id}/restock", {"quantity": 1}),
        ("post", "/products/{id}/deduct", {"quantity": 1}),
    ],
)
def test_management_is_for_admins_only(
    inventory: FlaskClient,
    make_product: Callable[..., dict[str, Any]],
    customer: dict[str, str],
    service: dict[str, str],
    count_rows: Callable[[str], int],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    product = make_product()
    url = path.format(id=product["id"])
    call = getattr(inventory, method)
    anonymous = call(url, json=body)
    assert anonymous.status_code == 401
    assert anonymous.mimetype == "application/problem+json"
    for headers in (customer, service):
        refused = call(url, json=body, headers=headers)
        assert refused.status_code == 403
        assert refused.get_json()["code"] == "forbidden"
    assert count_rows("products") == 1
    assert inventory.get(f"/products/{product['id']}").get_json() == product  # unchanged


def test_patch_changes_fields_but_not_stock(
    inventory: FlaskClient, admin: dict[str, str], make_product: Callable[..., dict[str, Any]]
) -> None:
    product = make_product()
    response = inventory.patch(
        f"/products/{product['id']}",
        json={"name": "Decaf beans", "price": "9.99", "category": "food", "description": ""},
        headers=admin,
    )
    assert response.status_code == 200
    body = response.get_json()
    assert (body["name"], body["price"], body["description"]) == ("Decaf beans", "9.99", "")
    assert body["updated_at"] >= product["updated_at"]
    refused = inventory.patch(f"/products/{product['id']}", json={"stock": 99}, headers=admin)
    assert refused.status_code == 422
    assert inventory.get(f"/products/{product['id']}").get_json()["stock"] == 10


def test_patch_unknown_product_is_404(inventory: FlaskClient, admin: dict[str, str]) -> None:
    response = inventory.patch("/products/4242", json={"price": "1.00"}, headers=admin)
    assert response.status_code == 404


def test_delete_archives_and_hides_the_product(
    inventory: FlaskClient,
    admin: dict[str, str],
    customer: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    count_rows: Callable[[str], int],
) -> None:
    product = make_product()
    assert inventory.delete(f"/products/{product['id']}", headers=admin).status_code == 204
    assert inventory.delete(f"/products/{product['id']}", headers=admin).status_code == 204
    assert count_rows("products") == 1  # kept, only archived
    assert inventory.get(f"/products/{product['id']}").status_code == 404
    assert inventory.get(f"/products/{product['id']}", headers=customer).status_code == 404
    seen_by_admin = inventory.get(f"/products/{product['id']}", headers=admin)
    assert seen_by_admin.status_code == 200
    assert seen_by_admin.get_json()["archived"] is True
    assert inventory.get("/products").get_json()["total"] == 0
    restored = inventory.patch(
        f"/products/{product['id']}", json={"archived": False}, headers=admin
    )
    assert restored.get_json()["archived"] is False
    assert inventory.get("/products").get_json()["total"] == 1


def test_delete_unknown_product_is_404(inventory: FlaskClient, admin: dict[str, str]) -> None:
    assert inventory.delete("/products/77", headers=admin).status_code == 404


def _names(response: Any) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [item["name"] for item in response.get_json()["items"]]


@pytest.fixture
def shelf(make_product: Callable[..., dict[str, Any]]) -> list[dict[str, Any]]:
    """A small catalogue across categories, prices and stock."""
    return [
        make_product(name="Wireless speaker", category="electronics", price="59.00", stock=3,
                     description="Bluetooth, waterproof."),
        make_product(name="USB cable", category="electronics", price="5.00", stock=0,
                     description="One metre, braided; works with the wireless dock."),
        make_product(name="Cotton shirt", category="clothes", price="25.00", stock=7,
                     description="100% cotton_blend, machine washable."),
        make_product(name="Leather belt", category="accessories", price="30.00", stock=2,
                     description="Brown."),
        make_product(name="Apple pie", category="food", price="8.25", stock=12,
                     description="Baked daily."),
    ]  # fmt: skip


def test_list_is_public_paginated_and_newest_first(
    inventory: FlaskClient, shelf: list[dict[str, Any]]
) -> None:
    response = inventory.get("/products?page_size=2")
    body = response.get_json()
    assert (body["page"], body["page_size"], body["total"]) == (1, 2, 5)
    assert _names(response) == ["Apple pie", "Leather belt"]
    assert _names(inventory.get("/products?page=3&page_size=2")) == ["Wireless speaker"]
    empty = inventory.get("/products?page=9")
    assert empty.get_json()["items"] == [] and empty.get_json()["total"] == 5


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("category=electronics", {"Wireless speaker", "USB cable"}),
        ("min_price=25&max_price=30.00", {"Cotton shirt", "Leather belt"}),
        ("min_price=59", {"Wireless speaker"}),
        ("max_price=5", {"USB cable"}),
        ("in_stock=true&category=electronics", {"Wireless speaker"}),
        ("in_stock=false", {"USB cable"}),
        ("q=WIRELESS", {"Wireless speaker", "USB cable"}),  # name or description, any case
        ("q=wire", {"Wireless speaker", "USB cable"}),  # word prefixes match
        ("q=speaker wire", {"Wireless speaker"}),  # every word, in any order
        ("q=wireless&category=electronics&in_stock=true", {"Wireless speaker"}),
        ("q=wire&in_stock=false", {"USB cable"}),
        ("q=wire&min_price=5.01", {"Wireless speaker"}),
        ("q=wire&max_price=58.99&category=electronics", {"USB cable"}),
        ("q=cotton&min_price=25&max_price=25&in_stock=true", {"Cotton shirt"}),
        ("q=cotton&category=food", set()),
        ("q=braided metre", {"USB cable"}),
        ("q=cotton_blend", {"Cotton shirt"}),
        ("q=100%25", {"Cotton shirt"}),
        ("q=%25", set()),  # no word at all: nothing matches, nothing breaks
        ("q=it's 'a\\\"b:*%26!", set()),
        ("q=toaster", set()),
        ("category=food&max_price=1", set()),
    ],
)
def test_filters_and_search(
    inventory: FlaskClient, shelf: list[dict[str, Any]], query: str, expected: set[str]
) -> None:
    response = inventory.get(f"/products?{query}")
    assert set(_names(response)) == expected
    assert response.get_json()["total"] == len(expected)


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("price", ["USB cable", "Apple pie", "Cotton shirt", "Leather belt", "Wireless speaker"]),
        ("-price", ["Wireless speaker", "Leather belt", "Cotton shirt", "Apple pie", "USB cable"]),
        ("name", ["Apple pie", "Cotton shirt", "Leather belt", "USB cable", "Wireless speaker"]),
        ("-name", ["Wireless speaker", "USB cable", "Leather belt", "Cotton shirt", "Apple pie"]),
        ("newest", ["Apple pie", "Leather belt", "Cotton shirt", "USB cable", "Wireless speaker"]),
    ],
)
def test_sort_orders(
    inventory: FlaskClient, shelf: list[dict[str, Any]], sort: str, expected: list[str]
) -> None:
    assert _names(inventory.get(f"/products?sort={sort}")) == expected


def test_search_uses_the_index(
    inventory_app: Any, db_engine: Engine, shelf: list[dict[str, Any]]
) -> None:
    from inventory_service.catalogue import text_search_statement

    statement = text_search_statement({"q": "wireless spea", "page": 1, "page_size": 20})
    sql = str(statement.compile(db_engine, compile_kwargs={"literal_binds": True}))
    with db_engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))  # five rows: force an index
        conn.execute(text("SET LOCAL enable_indexscan = off"))
        plan = "\n".join(row[0] for row in conn.execute(text("EXPLAIN " + sql)))
    assert "ix_products_search_vector" in plan


def test_batch_creates_all_in_order(
    inventory: FlaskClient, admin: dict[str, str], count_rows: Callable[[str], int]
) -> None:
    items = [product_payload(name=f"Item {i}", price=f"{i + 1}.00") for i in range(50)]
    response = inventory.post("/products/batch", json={"products": items}, headers=admin)
    assert response.status_code == 201
    body = response.get_json()
    assert body["created"] == 50
    assert [item["name"] for item in body["items"]] == [f"Item {i}" for i in range(50)]
    assert len({item["id"] for item in body["items"]}) == 50
    assert count_rows("products") == 50
    assert inventory.get("/products").get_json()["total"] == 50


def test_batch_is_all_or_nothing(
    inventory: FlaskClient, admin: dict[str, str], count_rows: Callable[[str], int]
) -> None:
    items = [product_payload(name=f"Item {i}") for i in range(10)]
    items[7]["price"] = "-1.00"
    response = inventory.post("/products/batch", json={"products": items}, headers=admin)
    assert response.status_code == 422
    assert "7" in str(response.get_json()["errors"])
    assert count_rows("products") == 0


@pytest.mark.parametrize("size", [0, 1001])
def test_batch_size_is_limited(
    inventory: FlaskClient, admin: dict[str, str], count_rows: Callable[[str], int], size: int
) -> None:
    items = [product_payload(name=f"Item {i}") for i in range(size)]
    response = inventory.post("/products/batch", json={"products": items}, headers=admin)
    assert response.status_code == 422
    assert response.get_json()["code"] == "validation_error"
    assert count_rows("products") == 0


def test_batch_of_a_thousand(
    inventory: FlaskClient, admin: dict[str, str], count_rows: Callable[[str], int]
) -> None:
    items = [product_payload(name=f"Item {i}") for i in range(1000)]
    response = inventory.post("/products/batch", json={"products": items}, headers=admin)
    assert response.status_code == 201
    assert response.get_json()["created"] == 1000
    assert count_rows("products") == 1000


def test_openapi_documents_the_endpoints(inventory: FlaskClient) -> None:
    spec = inventory.get("/openapi.json").get_json()
    paths = spec["paths"]
    for path in (
        "/products",
        "/products/{product_id}",
        "/products/batch",
        "/products/{product_id}/restock",
        "/products/{product_id}/deduct",
        "/internal/reservations",
        "/internal/reservations/{sale_id}",
        "/internal/reservations/{sale_id}/release",
        "/internal/reservations/{sale_id}/return",
    ):
        assert path in paths, path
    assert paths["/products"]["post"]["security"] == [{"bearerAuth": []}]
    price = spec["components"]["schemas"]["ProductCreate"]["properties"]["price"]
    assert price["type"] == "string"


def test_health_endpoints(inventory: FlaskClient) -> None:
    assert inventory.get("/healthz").get_json()["service"] == "inventory"
    ready = inventory.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["schema_revision"] == "0004"  # the head: 0004_events


def test_collections_render_products_exactly_like_the_schema(
    inventory: FlaskClient, admin: dict[str, str], make_product: Callable[..., dict[str, Any]]
) -> None:
    make_product(price="7.10", description="")
    body = {"products": [product_payload(price="1"), product_payload(price="1234567890.99")]}
    batch = inventory.post("/products/batch", json=body, headers=admin).get_json()["items"]
    listed = inventory.get("/products").get_json()["items"]
    assert len(listed) == 3
    for item in [*batch, *listed]:
        assert inventory.get(f"/products/{item['id']}").get_json() == item
    assert [item["price"] for item in batch] == ["1.00", "1234567890.99"]


def test_text_search_pages_and_totals(inventory: FlaskClient, shelf: list[dict[str, Any]]) -> None:
    first = inventory.get("/products?q=wireless&page_size=1&sort=price").get_json()
    assert (first["total"], [i["name"] for i in first["items"]]) == (2, ["USB cable"])
    second = inventory.get("/products?q=wireless&page_size=1&page=2&sort=price").get_json()
    assert [i["name"] for i in second["items"]] == ["Wireless speaker"]
    beyond = inventory.get("/products?q=wireless&page=7").get_json()
    assert (beyond["items"], beyond["total"], beyond["page"]) == ([], 2, 7)
    nothing = inventory.get("/products?q=toaster").get_json()
    assert (nothing["items"], nothing["total"]) == ([], 0)
