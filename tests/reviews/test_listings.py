"""A product's approved reviews with their summary, and a customer's reviews."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.reviews import World, assert_problem

EMPTY_SUMMARY = {
    "count": 0,
    "average": None,
    "histogram": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0},
}


def test_summary_is_right_after_several_approvals(world: World) -> None:
    for rating in (5, 4, 4, 4):
        world.approved_review(3, rating=rating)
    # Not counted: pending, rejected, flagged, and reviews of other products.
    world.review(world.buyer(3), 3, rating=1)
    rejected = world.review(world.buyer(3), 3, rating=1)
    world.moderate(rejected["id"], "reject", note="Off topic.")
    _, flagged = world.approved_review(3, rating=2)
    world.moderate(flagged["id"], "flag")
    world.approved_review(4, rating=1)

    summary = world.client.get("/products/3/reviews").get_json()["summary"]
    # 17 / 4 = 4.25: rounded half up, not to even.
    assert summary == {
        "count": 4,
        "average": "4.3",
        "histogram": {"1": 0, "2": 0, "3": 0, "4": 3, "5": 1},
    }
    world.approved_review(3, rating=2)
    summary = world.client.get("/products/3/reviews").get_json()["summary"]
    assert summary == {
        "count": 5,
        "average": "3.8",
        "histogram": {"1": 0, "2": 1, "3": 0, "4": 3, "5": 1},
    }
    world.approve(flagged["id"])  # the moderator changes their mind
    summary = world.client.get("/products/3/reviews").get_json()["summary"]
    assert (summary["count"], summary["average"], summary["histogram"]["2"]) == (6, "3.5", 2)
    other = world.client.get("/products/4/reviews").get_json()["summary"]
    assert (other["count"], other["average"]) == (1, "1.0")


def test_product_listing_is_approved_only_newest_first_and_paginated(world: World) -> None:
    approved = [world.approved_review(9, comment=f"Review {i}")[1] for i in range(3)]
    pending = world.review(world.buyer(9), 9)
    first = world.client.get("/products/9/reviews?page_size=2").get_json()
    assert (first["page"], first["page_size"], first["total"]) == (1, 2, 3)
    assert [r["id"] for r in first["items"]] == [approved[2]["id"], approved[1]["id"]]
    assert first["summary"]["count"] == 3
    second = world.client.get("/products/9/reviews?page=2&page_size=2").get_json()
    assert [r["id"] for r in second["items"]] == [approved[0]["id"]]
    assert second["summary"] == first["summary"]  # the summary covers every page
    beyond = world.client.get("/products/9/reviews?page=3&page_size=2").get_json()
    assert (beyond["items"], beyond["total"]) == ([], 3)
    assert pending["id"] not in {r["id"] for r in first["items"] + second["items"]}
    assert set(first["items"][0]) == set(pending)
    # Admins and authors see the same public listing.
    as_admin = world.client.get("/products/9/reviews", headers=world.admin).get_json()
    assert as_admin["total"] == 3


@pytest.mark.parametrize("product_id", ["424242", "0", "99999999999999999999999"])
def test_unknown_product_has_an_empty_listing(world: World, product_id: str) -> None:
    world.approved_review(1)
    response = world.client.get(f"/products/{product_id}/reviews")
    assert response.status_code == 200
    assert response.get_json() == {
        "items": [],
        "page": 1,
        "page_size": 20,
        "total": 0,
        "summary": EMPTY_SUMMARY,
    }


@pytest.mark.parametrize("query", ["page=0", "page_size=0", "page_size=101", "page=x", "page=-1"])
def test_bad_paging_is_422(world: World, query: str) -> None:
    assert_problem(world.client.get(f"/products/1/reviews?{query}"), 422, "validation_error")
    assert_problem(world.client.get(f"/customers/someone/reviews?{query}"), 422)


def _ids(page: dict[str, Any]) -> list[int]:
    return [r["id"] for r in page["items"]]


def test_customer_reviews_show_everything_only_to_the_author_and_admins(world: World) -> None:
    author = world.buyer(1, 2, 3, username="reviewer_ann")
    approved = world.review(author, 1)
    world.approve(approved["id"])
    pending = world.review(author, 2)
    rejected = world.review(author, 3)
    world.moderate(rejected["id"], "reject")
    world.approved_review(1)  # someone else's review is never listed here
    path = "/customers/reviewer_ann/reviews"
    everything = [rejected["id"], pending["id"], approved["id"]]  # newest first
    assert _ids(world.client.get(path, headers=author.headers).get_json()) == everything
    assert _ids(world.client.get(path, headers=world.admin).get_json()) == everything
    assert _ids(world.client.get(path).get_json()) == [approved["id"]]
    assert _ids(world.client.get(path, headers=world.customer().headers).get_json()) == [
        approved["id"]
    ]
    # Usernames are case-insensitive, for the author too.
    shouted = world.client.get("/customers/Reviewer_ANN/reviews", headers=author.headers)
    assert _ids(shouted.get_json()) == everything
    page = world.client.get(f"{path}?page=2&page_size=2", headers=author.headers).get_json()
    assert (page["total"], _ids(page)) == (3, [approved["id"]])


def test_unknown_customer_has_no_reviews(world: World) -> None:
    for username in ("nobody_here", "x" * 300, "Ünïcödé", "a%20b"):
        response = world.client.get(f"/customers/{username}/reviews", headers=world.admin)
        assert response.status_code == 200
        assert response.get_json() == {"items": [], "page": 1, "page_size": 20, "total": 0}


def test_invalid_token_is_401_not_anonymous(world: World) -> None:
    bad = {"Authorization": "Bearer garbage"}
    assert_problem(world.client.get("/customers/someone/reviews", headers=bad), 401)
    assert_problem(world.client.get("/reviews/1", headers=bad), 401)
