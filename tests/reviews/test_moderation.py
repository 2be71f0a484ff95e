"""The moderation queue and moderators' decisions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.identity import Identity, bearer
from tests.support.reviews import World, assert_problem


def _ids(page: dict[str, Any]) -> list[int]:
    return [r["id"] for r in page["items"]]


def test_queue_is_admin_only(world: World, identity: Identity) -> None:
    assert_problem(world.client.get("/reviews?status=pending"), 401)
    author = world.buyer(1)
    world.review(author, 1)
    assert_problem(world.client.get("/reviews", headers=author.headers), 403, "forbidden")
    service = bearer(identity.service_token("sales"))
    assert_problem(world.client.get("/reviews", headers=service), 403, "forbidden")


def test_queue_is_oldest_first_and_edits_rejoin_at_the_end(world: World) -> None:
    authors = [world.buyer(1) for _ in range(3)]
    first, second, third = (world.review(a, 1) for a in authors)
    queue = world.client.get("/reviews?status=pending", headers=world.admin).get_json()
    assert _ids(queue) == [first["id"], second["id"], third["id"]]
    assert (queue["total"], queue["page"], queue["page_size"]) == (3, 1, 20)
    default = world.client.get("/reviews", headers=world.admin).get_json()
    assert _ids(default) == _ids(queue)  # the queue of pending reviews is the default

    world.approve(first["id"])
    assert _ids(world.client.get("/reviews", headers=world.admin).get_json()) == [
        second["id"],
        third["id"],
    ]
    # The approved review is edited: it waits again, behind those already waiting.
    world.client.patch(f"/reviews/{first['id']}", json={"rating": 1}, headers=authors[0].headers)
    assert _ids(world.client.get("/reviews", headers=world.admin).get_json()) == [
        second["id"],
        third["id"],
        first["id"],
    ]
    page = world.client.get("/reviews?page=2&page_size=1", headers=world.admin).get_json()
    assert (page["total"], _ids(page)) == (3, [third["id"]])
    world.moderate(third["id"], "reject")
    rejected = world.client.get("/reviews?status=rejected", headers=world.admin).get_json()
    assert _ids(rejected) == [third["id"]]
    flagged = world.client.get("/reviews?status=flagged", headers=world.admin).get_json()
    assert (flagged["items"], flagged["total"]) == ([], 0)


@pytest.mark.parametrize("query", ["status=deleted", "status=", "status=PENDING", "page=0"])
def test_bad_queue_query_is_422(world: World, query: str) -> None:
    assert_problem(world.client.get(f"/reviews?{query}", headers=world.admin), 422)


def test_each_decision_sets_the_status_and_is_logged(
    world: World, count_rows: Callable[[str], int]
) -> None:
    review = world.review(world.buyer(5), 5)
    response = world.moderate(review["id"], "approve", note="Looks fine.")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "approved"
    assert [(e["action"], e["note"]) for e in body["moderation"]] == [("approve", "Looks fine.")]
    assert world.client.get(f"/reviews/{review['id']}").status_code == 200

    flagged = world.moderate(review["id"], "flag").get_json()
    assert flagged["status"] == "flagged"
    assert_problem(world.client.get(f"/reviews/{review['id']}"), 404)
    assert world.client.get("/products/5/reviews").get_json()["summary"]["count"] == 0

    rejected = world.moderate(review["id"], "reject", note="Abusive.").get_json()
    assert rejected["status"] == "rejected"
    assert [(e["from_status"], e["to_status"]) for e in rejected["moderation"]] == [
        ("pending", "approved"),
        ("approved", "flagged"),
        ("flagged", "rejected"),
    ]
    again = world.moderate(review["id"], "reject").get_json()  # repeating is allowed, and logged
    assert again["moderation"][-1]["from_status"] == "rejected"
    assert count_rows("moderation_log") == 4


BAD_DECISIONS: list[dict[str, Any]] = [
    {"action": "ban"},
    {"action": "APPROVE"},
    {"action": ""},
    {"action": 1},
    {"action": None},
    {"note": "no action"},
    {"action": "approve", "note": "x" * 1001},
    {"action": "approve", "note": "   "},
    {"action": "approve", "note": 5},
    {"action": "approve", "status": "approved"},
    {},
]


def test_bad_decisions_are_422_and_nothing_written(
    world: World, count_rows: Callable[[str], int], stored: Callable[[int], Any]
) -> None:
    review = world.review(world.buyer(5), 5)
    path = f"/reviews/{review['id']}/moderation"
    for body in BAD_DECISIONS:
        response = world.client.post(path, json=body, headers=world.admin)
        assert response.status_code == 422, (body, response.get_json())
        assert_problem(response, 422, "validation_error")
    assert count_rows("moderation_log") == 0
    assert stored(review["id"])["status"] == "pending"


def test_note_may_be_null_or_up_to_1000_characters(world: World) -> None:
    review = world.review(world.buyer(5), 5)
    path = f"/reviews/{review['id']}/moderation"
    null_note = world.client.post(path, json={"action": "flag", "note": None}, headers=world.admin)
    assert null_note.get_json()["moderation"][-1]["note"] is None
    long_note = world.moderate(review["id"], "approve", note="n" * 1000)
    assert long_note.get_json()["moderation"][-1]["note"] == "n" * 1000


def test_only_admins_moderate(
    world: World, identity: Identity, count_rows: Callable[[str], int]
) -> None:
    author = world.buyer(5)
    review = world.review(author, 5)
    path = f"/reviews/{review['id']}/moderation"
    body = {"action": "approve"}
    assert_problem(world.client.post(path, json=body), 401)
    assert_problem(world.client.post(path, json=body, headers=author.headers), 403)
    service = bearer(identity.service_token("sales"))
    assert_problem(world.client.post(path, json=body, headers=service), 403)
    assert count_rows("moderation_log") == 0
    assert (
        world.client.get(f"/reviews/{review['id']}", headers=author.headers).get_json()["status"]
        == "pending"
    )
