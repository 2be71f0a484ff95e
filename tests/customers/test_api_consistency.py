"""The conventions every service shares, checked on the customers service (shopkit code)."""

from __future__ import annotations

import json

from flask.testing import FlaskClient

from tests.support.identity import Identity, bearer, customer_payload


def test_a_create_answers_201_with_the_location_of_the_resource(customers: FlaskClient) -> None:
    created = customers.post("/customers", json=customer_payload("located_lou"))
    assert created.status_code == 201
    assert created.headers["Location"] == "/customers/located_lou"


def test_a_body_that_is_not_json_is_415_not_missing_fields(customers: FlaskClient) -> None:
    form = customers.post("/customers", data={"username": "formy"})
    assert form.status_code == 415
    assert form.content_type == "application/problem+json"
    assert form.get_json()["code"] == "unsupported_media_type"
    text = customers.post("/auth/login", data='{"username": "x"}', content_type="text/plain")
    assert text.status_code == 415
    # No body at all is not a media-type question: the fields are missing (422).
    assert customers.post("/customers").status_code == 422
    # JSON with a vendor media type is JSON.
    vendor = customers.post(
        "/auth/login", data='{"username": "x"}', content_type="application/vnd.shop+json"
    )
    assert vendor.status_code == 422


def test_a_non_positive_amount_must_be_greater_than_zero(
    customers: FlaskClient, identity: Identity
) -> None:
    profile, token = identity.new_customer()
    url = f"/customers/{profile['username']}/wallet/charge"
    for amount in ("-5.00", "0", "0.00", "-0.01"):
        refused = customers.post(url, json={"amount": amount}, headers=bearer(token))
        assert refused.status_code == 422, amount
        assert refused.get_json()["errors"]["amount"] == ["The amount must be greater than zero."]
    malformed = customers.post(url, json={"amount": "1e3"}, headers=bearer(token))
    assert "Not a valid amount" in malformed.get_json()["errors"]["amount"][0]


def test_every_answer_is_written_by_one_encoder(customers: FlaskClient, identity: Identity) -> None:
    profile, token = identity.new_customer()
    bodies = [
        customers.get(f"/customers/{profile['username']}", headers=bearer(token)).get_data(True),
        customers.get("/customers/nobody_here", headers=bearer(token)).get_data(True),  # problem
        customers.get("/openapi.json").get_data(True),
    ]
    for body in bodies:  # compact, keys sorted: exactly what one encoder writes
        compact = json.dumps(json.loads(body), separators=(",", ":"), sort_keys=True)
        assert body.strip() == compact, body[:200]


def test_a_replayed_answer_is_byte_for_byte_the_first(
    customers: FlaskClient, identity: Identity
) -> None:
    profile, token = identity.new_customer()
    url = f"/customers/{profile['username']}/wallet/charge"
    headers = {**bearer(token), "Idempotency-Key": "top-up-1"}
    first = customers.post(url, json={"amount": "5.00"}, headers=headers)
    again = customers.post(url, json={"amount": "5.00"}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_data() == first.get_data()


def test_swagger_ui_answers_with_and_without_the_trailing_slash(customers: FlaskClient) -> None:
    assert customers.get("/docs").status_code == 200
    slash = customers.get("/docs/")
    assert slash.status_code == 308
    assert slash.headers["Location"].endswith("/docs")
