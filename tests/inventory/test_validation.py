"""Bad input is a 4xx problem document and writes nothing (never a 500)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.support.products import product_payload


def _without(field: str) -> dict[str, Any]:
    return {k: v for k, v in product_payload().items() if k != field}


BAD_PRODUCTS: list[tuple[str, dict[str, Any]]] = [
    ("missing name", _without("name")),
    ("missing category", _without("category")),
    ("missing price", _without("price")),
    ("empty name", product_payload(name="")),
    ("blank name", product_payload(name="   ")),
    ("name too long", product_payload(name="x" * 201)),
    ("name with NUL", product_payload(name="bad\x00name")),
    ("name with lone surrogate", product_payload(name="bad\ud800name")),
    ("name not a string", product_payload(name=42)),
    ("unknown category", product_payload(category="toys")),
    ("category in capitals", product_payload(category="FOOD")),
    ("negative price", product_payload(price="-1.00")),
    ("zero price", product_payload(price="0.00")),
    ("over-precise price", product_payload(price="1.999")),
    ("price as number", product_payload(price=12.5)),
    ("price with exponent", product_payload(price="1e3")),
    ("price too large", product_payload(price="12345678901.00")),
    ("price not a number", product_payload(price="cheap")),
    ("negative stock", product_payload(stock=-1)),
    ("stock too large", product_payload(stock=1_000_001)),
    ("stock as string", product_payload(stock="5")),
    ("stock as float", product_payload(stock=5.5)),
    ("stock as bool", product_payload(stock=True)),
    ("description too long", product_payload(description="x" * 5001)),
    ("description with NUL", product_payload(description="a\x00b")),
    ("description null", product_payload(description=None)),
    ("client sets id", product_payload(id=5)),
    ("client sets archived", product_payload(archived=True)),
    ("unknown field", product_payload(colour="red")),
]


@pytest.mark.parametrize(("case", "body"), BAD_PRODUCTS, ids=[c for c, _ in BAD_PRODUCTS])
def test_bad_product_is_422_and_writes_nothing(
    inventory: FlaskClient,
    admin: dict[str, str],
    count_rows: Callable[[str], int],
    case: str,
    body: dict[str, Any],
) -> None:
    response = inventory.post("/products", json=body, headers=admin)
    assert response.status_code == 422, case
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["code"] == "validation_error"
    assert problem["errors"]
    assert count_rows("products") == 0
    batch = inventory.post(
        "/products/batch", json={"products": [product_payload(), body]}, headers=admin
    )
    assert batch.status_code == 422, case
    assert count_rows("products") == 0


def test_description_may_be_empty_and_is_trimmed(
    inventory: FlaskClient, admin: dict[str, str]
) -> None:
    response = inventory.post("/products", json=product_payload(description="  \n "), headers=admin)
    assert response.status_code == 201
    assert response.get_json()["description"] == ""


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": None},
        {"price": "0"},
        {"price": "1.001"},
        {"category": "toys"},
        {"stock": 5},
        {"archived": "perhaps"},
        {"id": 9},
    ],
)
def test_bad_patch_is_422_and_changes_nothing(
    inventory: FlaskClient,
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    body: dict[str, Any],
) -> None:
    product = make_product()
    response = inventory.patch(f"/products/{product['id']}", json=body, headers=admin)
    assert response.status_code == 422
    assert response.get_json()["code"] == "validation_error"
    assert inventory.get(f"/products/{product['id']}").get_json() == product


BAD_QUERIES = [
    "category=toys",
    "min_price=abc",
    "min_price=-1",
    "max_price=1.001",
    "min_price=10&max_price=5",
    "in_stock=perhaps",
    "sort=price_desc",
    "sort=",
    "q=",
    "q=" + "x" * 101,
    "q=a%00b",
    "page=0",
    "page=abc",
    "page_size=0",
    "page_size=101",
    "page_size=1000000",
]


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_malformed_filters_are_422(inventory: FlaskClient, query: str) -> None:
    response = inventory.get(f"/products?{query}")
    assert response.status_code == 422, query
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "validation_error"


def test_malformed_json_is_400_problem(inventory: FlaskClient, admin: dict[str, str]) -> None:
    response = inventory.post(
        "/products",
        data="{not json",
        headers={**admin, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "malformed_json"


def test_array_instead_of_object_is_422(inventory: FlaskClient, admin: dict[str, str]) -> None:
    response = inventory.post("/products", json=[product_payload()], headers=admin)
    assert response.status_code == 422


@pytest.mark.parametrize(
    "body",
    [{}, {"quantity": 0}, {"quantity": -3}, {"quantity": "2"}, {"quantity": 1.5},
     {"quantity": True}, {"quantity": 1_000_001}, {"quantity": None}],
)  # fmt: skip
@pytest.mark.parametrize("action", ["restock", "deduct"])
def test_bad_quantity_is_422_and_stock_unchanged(
    inventory: FlaskClient,
    admin: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    body: dict[str, Any],
    action: str,
) -> None:
    product = make_product(stock=4)
    response = inventory.post(f"/products/{product['id']}/{action}", json=body, headers=admin)
    assert response.status_code == 422
    assert inventory.get(f"/products/{product['id']}").get_json()["stock"] == 4


def _reservation(**overrides: Any) -> dict[str, Any]:
    return {"sale_id": str(uuid.uuid4()), "product_id": 1, "quantity": 1, **overrides}


BAD_RESERVATIONS = [
    {k: v for k, v in _reservation().items() if k != "sale_id"},
    {k: v for k, v in _reservation().items() if k != "product_id"},
    {k: v for k, v in _reservation().items() if k != "quantity"},
    _reservation(sale_id="not-a-uuid"),
    _reservation(product_id="1"),
    _reservation(product_id=0),
    _reservation(product_id=2**63),
    _reservation(quantity=0),
    _reservation(quantity=-1),
    _reservation(quantity=2.0),
    _reservation(quantity=1_000_001),
    _reservation(unit_price="1.00"),
]


@pytest.mark.parametrize("body", BAD_RESERVATIONS)
def test_bad_reservation_is_422_and_takes_nothing(
    inventory: FlaskClient,
    service: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    count_rows: Callable[[str], int],
    body: dict[str, Any],
) -> None:
    product = make_product(stock=5)
    assert product["id"] == 1
    response = inventory.post(
        "/internal/reservations",
        json=body,
        headers={**service, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 422
    assert response.get_json()["code"] == "validation_error"
    assert count_rows("reservations") == 0
    assert count_rows("idempotency_keys") == 0
    assert inventory.get("/products/1").get_json()["stock"] == 5


@pytest.mark.parametrize(
    "query", ["status=cancelled", "product_id=abc", "product_id=0", "page_size=101"]
)
def test_bad_reservation_listing_is_422(
    inventory: FlaskClient, service: dict[str, str], query: str
) -> None:
    response = inventory.get(f"/internal/reservations?{query}", headers=service)
    assert response.status_code == 422


@pytest.mark.parametrize(
    "key", ["has space", "x" * 201, "naïve"], ids=["space", "too long", "non-ascii"]
)
def test_bad_idempotency_key_is_400(
    inventory: FlaskClient,
    service: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    count_rows: Callable[[str], int],
    key: str,
) -> None:
    make_product(stock=5)
    response = inventory.post(
        "/internal/reservations", json=_reservation(), headers={**service, "Idempotency-Key": key}
    )
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_idempotency_key"
    assert count_rows("reservations") == 0
