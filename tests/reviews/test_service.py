"""What the reviews service gets from shopkit: health, readiness, OpenAPI and docs."""

from __future__ import annotations

from flask.testing import FlaskClient


def test_health_and_readiness(reviews: FlaskClient) -> None:
    assert reviews.get("/healthz").get_json() == {"status": "ok", "service": "reviews"}
    ready = reviews.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["schema_revision"] == "0001"


def test_openapi_documents_every_operation_and_its_security(reviews: FlaskClient) -> None:
    spec = reviews.get("/openapi.json").get_json()
    paths = spec["paths"]
    assert set(paths["/reviews"]) >= {"get", "post"}
    assert set(paths["/reviews/{review_id}"]) >= {"get", "patch", "delete"}
    assert "post" in paths["/reviews/{review_id}/moderation"]
    assert "get" in paths["/products/{product_id}/reviews"]
    assert "get" in paths["/customers/{username}/reviews"]
    assert paths["/reviews"]["post"]["security"] == [{"bearerAuth": []}]
    assert paths["/reviews/{review_id}/moderation"]["post"]["security"] == [{"bearerAuth": []}]
    assert {} in paths["/reviews/{review_id}"]["get"]["security"]  # anonymous allowed
    assert "security" not in paths["/products/{product_id}/reviews"]["get"]
    create = spec["components"]["schemas"]["ReviewCreate"]
    assert set(create["required"]) == {"product_id", "rating", "comment"}
    assert (
        create["properties"]["rating"]["minimum"],
        create["properties"]["rating"]["maximum"],
    ) == (
        1,
        5,
    )
    assert reviews.get("/docs").status_code == 200


def test_unknown_route_and_method_are_problems(reviews: FlaskClient) -> None:
    missing = reviews.get("/nothing/here")
    assert (missing.status_code, missing.mimetype) == (404, "application/problem+json")
    wrong = reviews.put("/reviews")
    assert (wrong.status_code, wrong.get_json()["code"]) == (405, "method_not_allowed")
