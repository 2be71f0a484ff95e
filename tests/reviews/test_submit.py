"""Submitting a review: verified buyers only, once per product, nothing written on failure."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.identity import Identity, bearer
from tests.support.reviews import FakeShop, OrderEvents, World, assert_problem

REVIEW_KEYS = {
    "id",
    "product_id",
    "customer_id",
    "username",
    "rating",
    "comment",
    "status",
    "created_at",
    "updated_at",
}


def test_buyer_submits_a_pending_review(
    world: World, shop: FakeShop, stored: Callable[[int], Any]
) -> None:
    buyer = world.buyer(7)
    response = world.submit(buyer, 7, rating=4, comment="  Rich and smooth.  ")
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == REVIEW_KEYS
    assert body["product_id"] == 7
    assert body["customer_id"] == buyer.id
    assert body["username"] == buyer.username
    assert (body["rating"], body["comment"], body["status"]) == (4, "Rich and smooth.", "pending")
    assert body["created_at"] and body["updated_at"]
    assert response.headers["Location"] == f"/reviews/{body['id']}"
    row = stored(body["id"])
    assert row is not None
    assert (row["customer_id"], row["product_id"], row["status"]) == (buyer.id, 7, "pending")
    assert shop.calls == [("inventory", 7)]  # and no one else: the purchase came by events


def test_rating_and_comment_boundaries_are_accepted(world: World) -> None:
    buyer = world.buyer(1, 2)
    assert world.review(buyer, 1, rating=1, comment="x")["rating"] == 1
    longest = world.review(buyer, 2, rating=5, comment="é" * 2000)
    assert (longest["rating"], len(longest["comment"])) == (5, 2000)


def test_non_buyer_is_refused_and_nothing_written(
    world: World, shop: FakeShop, count_rows: Callable[[str], int]
) -> None:
    stranger = world.customer()
    shop.products.add(7)
    assert_problem(world.submit(stranger, 7), 403, "not_a_buyer")
    bought_other = world.buyer(8)
    assert_problem(world.submit(bought_other, 7), 403, "not_a_buyer")
    someone_else = world.buyer(7)  # another customer's purchase does not count
    assert_problem(world.submit(stranger, 7), 403, "not_a_buyer")
    assert count_rows("reviews") == 0
    assert world.submit(someone_else, 7).status_code == 201


def test_unknown_product_is_404_naming_it(
    world: World, shop: FakeShop, orders: OrderEvents, count_rows: Callable[[str], int]
) -> None:
    buyer = world.customer()
    orders.paid(buyer.id, 404)  # even a purchase record does not make it exist
    body = assert_problem(world.submit(buyer, 404), 404, "not_found")
    assert body["product_ids"] == [404]
    assert count_rows("reviews") == 0
    assert shop.calls == [("inventory", 404)]


def test_second_review_of_the_same_product_is_409(
    world: World, shop: FakeShop, stored: Callable[[int], Any], count_rows: Callable[[str], int]
) -> None:
    buyer = world.buyer(7, 8)
    first = world.review(buyer, 7, rating=5, comment="First.")
    shop.calls.clear()
    assert_problem(world.submit(buyer, 7, rating=1, comment="Second."), 409, "already_reviewed")
    assert shop.calls == []  # refused before asking anybody
    assert count_rows("reviews") == 1
    assert stored(first["id"])["comment"] == "First."
    # The same customer may review another product; another buyer the same product.
    assert world.submit(buyer, 8).status_code == 201
    assert world.submit(world.buyer(7), 7).status_code == 201
    # Still 409 once the first review is approved.
    world.approve(first["id"])
    assert_problem(world.submit(buyer, 7), 409, "already_reviewed")


def test_only_customers_may_submit(
    world: World, identity: Identity, shop: FakeShop, count_rows: Callable[[str], int]
) -> None:
    shop.products.add(7)
    body = {"product_id": 7, "rating": 5, "comment": "Nice."}
    assert_problem(world.client.post("/reviews", json=body), 401)
    assert_problem(world.client.post("/reviews", json=body, headers=world.admin), 403, "forbidden")
    service = bearer(identity.service_token("sales"))
    assert_problem(world.client.post("/reviews", json=body, headers=service), 403, "forbidden")
    bad_token = {"Authorization": "Bearer not-a-token"}
    assert_problem(world.client.post("/reviews", json=body, headers=bad_token), 401)
    assert count_rows("reviews") == 0
    assert shop.calls == []


def test_inventory_down_is_503_and_nothing_written(
    world: World, shop: FakeShop, count_rows: Callable[[str], int]
) -> None:
    buyer = world.buyer(7)
    shop.down.add("inventory")
    response = world.submit(buyer, 7)
    body = assert_problem(response, 503, "dependency_unavailable")
    assert body["dependency"] == "inventory"
    assert response.headers["Retry-After"] == "2"
    assert count_rows("reviews") == 0
    shop.down.clear()
    assert world.submit(buyer, 7).status_code == 201


VALID: dict[str, Any] = {"product_id": 7, "rating": 4, "comment": "Fine."}

#: ``(change to a valid body, field named in the errors)``; ``...`` leaves the field out.
BAD_INPUT: list[tuple[dict[str, Any], str]] = [
    ({"rating": 0}, "rating"),
    ({"rating": 6}, "rating"),
    ({"rating": -1}, "rating"),
    ({"rating": "five"}, "rating"),
    ({"rating": "5"}, "rating"),
    ({"rating": 4.5}, "rating"),
    ({"rating": True}, "rating"),
    ({"rating": None}, "rating"),
    ({"rating": ...}, "rating"),
    ({"comment": ""}, "comment"),
    ({"comment": "   \n\t "}, "comment"),
    ({"comment": "x" * 2001}, "comment"),
    ({"comment": 42}, "comment"),
    ({"comment": ["a"]}, "comment"),
    ({"comment": None}, "comment"),
    ({"comment": ...}, "comment"),
    ({"product_id": 0}, "product_id"),
    ({"product_id": -7}, "product_id"),
    ({"product_id": "7"}, "product_id"),
    ({"product_id": 2**63}, "product_id"),
    ({"product_id": 7.0}, "product_id"),
    ({"product_id": ...}, "product_id"),
    ({"status": "approved"}, "status"),
    ({"username": "someone"}, "username"),
]


def test_bad_input_is_422_and_nothing_written(
    world: World, shop: FakeShop, count_rows: Callable[[str], int]
) -> None:
    buyer = world.buyer(7)
    for changes, field in BAD_INPUT:
        payload = {k: v for k, v in {**VALID, **changes}.items() if v is not ...}
        response = world.client.post("/reviews", json=payload, headers=buyer.headers)
        assert response.status_code == 422, (changes, response.get_json())
        body = assert_problem(response, 422, "validation_error")
        assert field in body["errors"], (changes, body)
    assert count_rows("reviews") == 0
    assert shop.calls == []  # refused before asking inventory
    assert world.client.post("/reviews", json=VALID, headers=buyer.headers).status_code == 201


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ('{"product_id": 7, "rating": 4, "comment": "a\\ud800"}', 422),  # lone surrogate
        ('{"product_id": 7, "rating": 4, "comment": "a\\u0000b"}', 422),  # NUL
        ('{"product_id": 7, "rating": 4,', 400),  # not JSON
        ("[1, 2, 3]", 422),  # not an object
        ('"text"', 422),
    ],
)
def test_malformed_bodies_are_problems_and_nothing_written(
    world: World, count_rows: Callable[[str], int], raw: str, status: int
) -> None:
    buyer = world.buyer(7)
    response = world.client.post(
        "/reviews", data=raw, content_type="application/json", headers=buyer.headers
    )
    assert_problem(response, status)
    assert count_rows("reviews") == 0


def test_empty_body_lists_every_missing_field(world: World) -> None:
    buyer = world.buyer(7)
    for response in (
        world.client.post("/reviews", json={}, headers=buyer.headers),
        world.client.post("/reviews", headers=buyer.headers),
    ):
        body = assert_problem(response, 422, "validation_error")
        assert {"product_id", "rating", "comment"} <= set(body["errors"])


def test_concurrent_duplicates_give_one_201_and_one_409(
    reviews_app: Flask, world: World, shop: FakeShop, count_rows: Callable[[str], int]
) -> None:
    buyer = world.buyer(7)
    # Both requests pass the "not reviewed yet" check, then meet before inserting.
    shop.barrier = threading.Barrier(2, timeout=10)
    statuses: list[int] = []
    codes: list[str | None] = []

    def submit(comment: str) -> None:
        client: FlaskClient = reviews_app.test_client()
        response = client.post(
            "/reviews",
            data=json.dumps({"product_id": 7, "rating": 3, "comment": comment}),
            content_type="application/json",
            headers=buyer.headers,
        )
        statuses.append(response.status_code)
        codes.append((response.get_json() or {}).get("code"))

    threads = [threading.Thread(target=submit, args=(f"Attempt {i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [201, 409]
    assert "already_reviewed" in codes
    assert count_rows("reviews") == 1
