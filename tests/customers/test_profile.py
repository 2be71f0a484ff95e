"""Profiles: who may read, change, list and deactivate accounts."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.support.identity import Identity, bearer, customer_payload


def test_profile_access_by_role(customers: FlaskClient, identity: Identity) -> None:
    owner, owner_token = identity.new_customer()
    _, other_token = identity.new_customer()
    path = f"/customers/{owner['username']}"
    assert customers.get(path).status_code == 401
    assert customers.get(path, headers=bearer(other_token)).status_code == 403
    assert customers.get(path, headers=bearer(identity.service_token())).status_code == 403
    mine = customers.get(path, headers=bearer(owner_token))
    assert mine.status_code == 200
    assert mine.get_json()["id"] == owner["id"]
    as_admin = customers.get(path, headers=bearer(identity.admin_token()))
    assert as_admin.status_code == 200
    assert as_admin.get_json()["balance"] == "0.00"


def test_usernames_in_urls_are_case_insensitive_for_their_owner(
    customers: FlaskClient, identity: Identity
) -> None:
    """The owner may spell their username in any case, as an admin may."""
    owner, token = identity.new_customer()
    path = f"/customers/{owner['username'].upper()}"
    mine = customers.get(path, headers=bearer(token))
    assert mine.status_code == 200, mine.get_json()
    assert mine.get_json()["id"] == owner["id"]
    charged = customers.post(
        path + "/wallet/charge", json={"amount": "5.00"}, headers=bearer(token)
    )
    assert charged.status_code == 200
    assert customers.get(path + "/wallet", headers=bearer(token)).get_json()["balance"] == "5.00"
    _, other_token = identity.new_customer()
    assert customers.get(path, headers=bearer(other_token)).status_code == 403


def test_admin_gets_404_for_unknown_customer(customers: FlaskClient, identity: Identity) -> None:
    response = customers.get("/customers/nobody_here", headers=bearer(identity.admin_token()))
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


def test_patch_changes_profile_fields_only(customers: FlaskClient, identity: Identity) -> None:
    owner, token = identity.new_customer()
    path = f"/customers/{owner['username']}"
    response = customers.patch(
        path,
        json={"full_name": "New Name", "age": 44, "email": "NEW@Example.com"},
        headers=bearer(token),
    )
    assert response.status_code == 200
    body = response.get_json()
    assert (body["full_name"], body["age"], body["email"]) == ("New Name", 44, "new@example.com")
    for forbidden in (
        {"balance": "1000.00"},
        {"role": "admin"},
        {"username": "renamed"},
        {"password": "x" * 10},
    ):
        refused = customers.patch(path, json=forbidden, headers=bearer(token))
        assert refused.status_code == 422, forbidden
    after = customers.get(path, headers=bearer(token)).get_json()
    assert after["balance"] == "0.00"
    assert after["username"] == owner["username"]


def test_patch_by_other_customer_is_403_and_admin_may(
    customers: FlaskClient, identity: Identity
) -> None:
    owner, _ = identity.new_customer()
    _, other = identity.new_customer()
    path = f"/customers/{owner['username']}"
    assert customers.patch(path, json={"age": 50}, headers=bearer(other)).status_code == 403
    assert customers.patch(path, json={"age": 50}).status_code == 401
    response = customers.patch(path, json={"age": 50}, headers=bearer(identity.admin_token()))
    assert response.status_code == 200
    assert response.get_json()["age"] == 50


def test_patch_to_an_email_another_account_uses_is_allowed(
    customers: FlaskClient, identity: Identity
) -> None:
    # Emails are contact data, not identities: a 409 would tell who uses the email.
    first, _ = identity.new_customer()
    _, token = identity.new_customer()
    me = jwt_sub(token)
    response = customers.patch(
        f"/customers/{me}", json={"email": first["email"]}, headers=bearer(token)
    )
    assert response.status_code == 200
    assert response.get_json()["email"] == first["email"]


def jwt_sub(token: str) -> str:
    import jwt

    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def test_delete_deactivates_and_keeps_history(customers: FlaskClient, identity: Identity) -> None:
    owner, token = identity.new_customer()
    admin = bearer(identity.admin_token())
    customers.post(
        f"/customers/{owner['username']}/wallet/charge",
        json={"amount": "5.00"},
        headers=bearer(token),
    )
    _, other = identity.new_customer()
    assert (
        customers.delete(f"/customers/{owner['username']}", headers=bearer(other)).status_code
        == 403
    )
    assert customers.delete(f"/customers/{owner['username']}").status_code == 401
    assert customers.delete(f"/customers/{owner['username']}", headers=admin).status_code == 204
    # Still there for the admin, with its wallet history.
    wallet = customers.get(f"/customers/{owner['username']}/wallet", headers=admin).get_json()
    assert wallet["balance"] == "5.00"
    assert len(wallet["items"]) == 1
    listed = customers.get("/customers?active=false", headers=admin).get_json()
    assert [c["username"] for c in listed["items"]] == [owner["username"]]
    # Deleting again is harmless.
    assert customers.delete(f"/customers/{owner['username']}", headers=admin).status_code == 204


def test_admin_account_cannot_be_deactivated(customers: FlaskClient, identity: Identity) -> None:
    response = customers.delete("/customers/admin", headers=bearer(identity.admin_token()))
    assert response.status_code == 409


def test_list_is_admin_only_searchable_and_paginated(
    customers: FlaskClient, identity: Identity
) -> None:
    for i in range(5):
        identity.register(f"pager{i}", full_name=f"Pager Person {i}")
    identity.register("someone_else", full_name="Unrelated")
    admin = bearer(identity.admin_token())
    _, customer_token = identity.new_customer()
    assert customers.get("/customers").status_code == 401
    assert customers.get("/customers", headers=bearer(customer_token)).status_code == 403
    page = customers.get("/customers?q=pager&page=2&page_size=2", headers=admin).get_json()
    assert page["total"] == 5
    assert page["page"] == 2
    assert [c["username"] for c in page["items"]] == ["pager2", "pager3"]
    empty = customers.get("/customers?q=zzzzzz", headers=admin).get_json()
    assert empty == {"page": 1, "page_size": 20, "total": 0, "items": []}
    wildcard = customers.get("/customers?q=%25", headers=admin).get_json()
    assert wildcard["total"] == 0  # '%' is matched literally, not as a wildcard
    for bad in ("page=0", "page_size=101", "page_size=abc", "active=maybe"):
        response = customers.get(f"/customers?{bad}", headers=admin)
        assert response.status_code == 422, bad
        assert response.mimetype == "application/problem+json"


def test_batch_create_is_admin_only_and_all_or_nothing(
    customers: FlaskClient, identity: Identity
) -> None:
    admin = bearer(identity.admin_token())
    batch = {"customers": [customer_payload(f"bulk{i}") for i in range(50)]}
    _, customer_token = identity.new_customer()
    assert (
        customers.post("/customers/batch", json=batch, headers=bearer(customer_token)).status_code
        == 403
    )
    assert customers.post("/customers/batch", json=batch).status_code == 401
    created = customers.post("/customers/batch", json=batch, headers=admin)
    assert created.status_code == 201
    assert created.get_json()["created"] == 50
    assert {c["balance"] for c in created.get_json()["items"]} == {"0.00"}
    # Bulk-created accounts can log in (their cheaper hash is upgraded on the way).
    assert identity.login("bulk7", batch["customers"][7]["password"])["access_token"]
    again = {"customers": [customer_payload("fresh_one"), customer_payload("bulk3")]}
    clash = customers.post("/customers/batch", json=again, headers=admin)
    assert clash.status_code == 409
    assert clash.get_json()["usernames"] == ["bulk3"]
    assert customers.get("/customers?q=fresh_one", headers=admin).get_json()["total"] == 0
    repeated = {"customers": [customer_payload("twin"), customer_payload("twin")]}
    assert (
        customers.post("/customers/batch", json=repeated, headers=admin).get_json()["code"]
        == "duplicate_in_batch"
    )
    too_many = {"customers": [customer_payload(f"x{i}") for i in range(1001)]}
    assert customers.post("/customers/batch", json=too_many, headers=admin).status_code == 422
    assert (
        customers.post("/customers/batch", json={"customers": []}, headers=admin).status_code == 422
    )
