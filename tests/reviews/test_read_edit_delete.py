"""Reading, editing and deleting one review: who may, and what stays hidden."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.identity import Identity, bearer
from tests.support.reviews import World, assert_problem


def test_pending_review_is_seen_only_by_author_and_admin(world: World, identity: Identity) -> None:
    author = world.buyer(7)
    review = world.review(author, 7, rating=4, comment="Solid.")
    path = f"/reviews/{review['id']}"
    other = world.customer()
    service = bearer(identity.service_token("sales"))
    for headers in ({}, other.headers, service):
        assert_problem(world.client.get(path, headers=headers), 404, "not_found")
    mine = world.client.get(path, headers=author.headers)
    assert mine.status_code == 200
    assert mine.get_json() == review
    as_admin = world.client.get(path, headers=world.admin).get_json()
    assert as_admin["status"] == "pending"
    assert as_admin["moderation"] == []
    world.approve(review["id"])
    public = world.client.get(path)
    assert public.status_code == 200
    assert public.get_json()["status"] == "approved"
    assert "moderation" not in public.get_json()
    assert world.client.get(path, headers=other.headers).status_code == 200


@pytest.mark.parametrize("action", ["flag", "reject"])
def test_flagged_and_rejected_reviews_are_hidden(world: World, action: str) -> None:
    author, review = world.approved_review(7)
    path = f"/reviews/{review['id']}"
    assert world.moderate(review["id"], action).status_code == 200
    assert_problem(world.client.get(path), 404)
    assert_problem(world.client.get(path, headers=world.customer().headers), 404)
    assert world.client.get(path, headers=author.headers).get_json()["status"] in {
        "flagged",
        "rejected",
    }


def test_admin_sees_the_moderation_log_and_the_author_does_not(world: World) -> None:
    author = world.buyer(7)
    review = world.review(author, 7)
    world.approve(review["id"])
    assert world.moderate(review["id"], "flag", note="  Reported as spam.  ").status_code == 200
    path = f"/reviews/{review['id']}"
    log = world.client.get(path, headers=world.admin).get_json()["moderation"]
    assert [(e["action"], e["from_status"], e["to_status"]) for e in log] == [
        ("approve", "pending", "approved"),
        ("flag", "approved", "flagged"),
    ]
    assert [e["note"] for e in log] == [None, "Reported as spam."]
    assert {e["moderator"] for e in log} == {"admin"}
    assert all(e["created_at"] for e in log)
    assert "moderation" not in world.client.get(path, headers=author.headers).get_json()


def test_edit_sends_the_review_back_to_pending_until_approved(world: World) -> None:
    author, review = world.approved_review(7, rating=5, comment="Great.")
    path = f"/reviews/{review['id']}"
    edited = world.client.patch(path, json={"rating": 2}, headers=author.headers)
    assert edited.status_code == 200
    body = edited.get_json()
    assert (body["rating"], body["comment"], body["status"]) == (2, "Great.", "pending")
    assert body["updated_at"] > review["updated_at"]
    # Hidden everywhere the public looks.
    assert_problem(world.client.get(path), 404)
    listing = world.client.get("/products/7/reviews").get_json()
    assert (listing["total"], listing["summary"]["count"]) == (0, 0)
    assert world.client.get(f"/customers/{author.username}/reviews").get_json()["total"] == 0
    # The author still sees it, and it is back in the moderation queue.
    assert world.client.get(path, headers=author.headers).get_json()["rating"] == 2
    queue = world.client.get("/reviews?status=pending", headers=world.admin).get_json()
    assert [r["id"] for r in queue["items"]] == [review["id"]]
    world.approve(review["id"])
    assert world.client.get(path).get_json()["rating"] == 2
    assert world.client.get("/products/7/reviews").get_json()["summary"]["average"] == "2.0"


def test_edit_of_the_comment_trims_it(world: World, stored: Callable[[int], Any]) -> None:
    author = world.buyer(7)
    review = world.review(author, 7)
    response = world.client.patch(
        f"/reviews/{review['id']}",
        json={"comment": "  Changed my mind.  ", "rating": 3},
        headers=author.headers,
    )
    assert response.status_code == 200
    row = stored(review["id"])
    assert (row["comment"], row["rating"], row["status"]) == ("Changed my mind.", 3, "pending")


def test_edit_that_changes_nothing_keeps_the_approval(world: World) -> None:
    author, review = world.approved_review(7, rating=5, comment="Great.")
    response = world.client.patch(
        f"/reviews/{review['id']}",
        json={"rating": 5, "comment": " Great. "},
        headers=author.headers,
    )
    assert response.status_code == 200
    assert response.get_json()["status"] == "approved"
    assert world.client.get(f"/reviews/{review['id']}").status_code == 200


def test_only_the_author_may_edit(
    world: World, identity: Identity, stored: Callable[[int], Any]
) -> None:
    author, approved = world.approved_review(7, rating=5, comment="Great.")
    pending = world.review(world.buyer(8), 8)
    other = world.customer()
    service = bearer(identity.service_token("sales"))
    change = {"rating": 1}
    approved_path = f"/reviews/{approved['id']}"
    assert_problem(world.client.patch(approved_path, json=change), 401)
    assert_problem(world.client.patch(approved_path, json=change, headers=other.headers), 403)
    assert_problem(world.client.patch(approved_path, json=change, headers=world.admin), 403)
    assert_problem(world.client.patch(approved_path, json=change, headers=service), 403)
    # A hidden review is not even revealed to other customers.
    pending_path = f"/reviews/{pending['id']}"
    assert_problem(world.client.patch(pending_path, json=change, headers=other.headers), 404)
    assert_problem(world.client.patch(pending_path, json=change, headers=author.headers), 404)
    assert (stored(approved["id"])["rating"], stored(approved["id"])["status"]) == (5, "approved")
    assert stored(pending["id"])["rating"] == 5


BAD_EDITS: list[dict[str, Any]] = [
    {},
    {"rating": 0},
    {"rating": 6},
    {"rating": "five"},
    {"rating": None},
    {"comment": ""},
    {"comment": "   "},
    {"comment": "x" * 2001},
    {"comment": None},
    {"rating": 3, "comment": ""},
    {"status": "approved"},
    {"product_id": 8},
    {"username": "someone_else"},
]


def test_bad_edits_are_422_and_change_nothing(world: World, stored: Callable[[int], Any]) -> None:
    author, review = world.approved_review(7, rating=5, comment="Great.")
    before = stored(review["id"])
    for changes in BAD_EDITS:
        response = world.client.patch(
            f"/reviews/{review['id']}", json=changes, headers=author.headers
        )
        assert response.status_code == 422, (changes, response.get_json())
        assert_problem(response, 422, "validation_error")
    assert stored(review["id"]) == before
    assert world.client.get(f"/reviews/{review['id']}").status_code == 200  # still approved


def test_author_deletes_for_good_and_may_review_again(
    world: World, count_rows: Callable[[str], int]
) -> None:
    author, review = world.approved_review(7)
    world.moderate(review["id"], "flag", note="Check this.")
    assert count_rows("moderation_log") == 2
    path = f"/reviews/{review['id']}"
    response = world.client.delete(path, headers=author.headers)
    assert response.status_code == 204
    assert response.get_data() == b""
    assert_problem(world.client.get(path, headers=author.headers), 404)
    assert_problem(world.client.get(path, headers=world.admin), 404)
    assert_problem(world.client.delete(path, headers=author.headers), 404)
    assert (count_rows("reviews"), count_rows("moderation_log")) == (0, 0)
    again = world.review(author, 7, comment="Second thoughts.")
    assert again["id"] != review["id"]


def test_admin_may_delete_any_review(world: World, count_rows: Callable[[str], int]) -> None:
    pending = world.review(world.buyer(7), 7)
    _, approved = world.approved_review(7)
    for review in (pending, approved):
        assert (
            world.client.delete(f"/reviews/{review['id']}", headers=world.admin).status_code == 204
        )
    assert count_rows("reviews") == 0


def test_others_may_not_delete(
    world: World, identity: Identity, count_rows: Callable[[str], int]
) -> None:
    _, approved = world.approved_review(7)
    pending = world.review(world.buyer(8), 8)
    other = world.customer()
    service = bearer(identity.service_token("sales"))
    approved_path = f"/reviews/{approved['id']}"
    assert_problem(world.client.delete(approved_path), 401)
    assert_problem(world.client.delete(approved_path, headers=other.headers), 403)
    assert_problem(world.client.delete(approved_path, headers=service), 403)
    assert_problem(world.client.delete(f"/reviews/{pending['id']}", headers=other.headers), 404)
    assert count_rows("reviews") == 2


@pytest.mark.parametrize("review_id", ["999", "0", "99999999999999999999999"])
def test_unknown_review_is_404_everywhere(world: World, review_id: str) -> None:
    path = f"/reviews/{review_id}"
    author = world.customer()
    assert_problem(world.client.get(path, headers=world.admin), 404, "not_found")
    assert_problem(world.client.get(path), 404, "not_found")
    assert_problem(world.client.patch(path, json={"rating": 3}, headers=author.headers), 404)
    assert_problem(world.client.delete(path, headers=world.admin), 404)
    assert_problem(world.moderate(review_id, "approve"), 404)


def test_non_numeric_review_id_is_404(world: World) -> None:
    assert_problem(world.client.get("/reviews/abc"), 404)
    assert_problem(world.client.get("/reviews/-1"), 404)
