"""What the reviews service gets from shopkit: health, readiness, OpenAPI, AsyncAPI and docs."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask.testing import FlaskClient
from sqlalchemy import Engine

from reviews_service.models import Base


def test_health_and_readiness(reviews: FlaskClient) -> None:
    assert reviews.get("/healthz").get_json() == {"status": "ok", "service": "reviews"}
    ready = reviews.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["schema_revision"] == "0002"


def test_the_migrations_match_the_models(db_engine: Engine) -> None:
    with db_engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_schemas": True,
                "include_name": lambda name, type_, _p: type_ != "schema" or name == "reviews",
                "compare_type": True,
                "version_table_schema": "reviews",
            },
        )
        assert compare_metadata(context, Base.metadata) == []


def test_asyncapi_names_the_review_events_sent_and_the_order_events_received(
    reviews: FlaskClient,
) -> None:
    document = reviews.get("/asyncapi.json").get_json()
    assert document["asyncapi"] == "3.0.0"
    assert set(document["channels"]) == {"review", "order"}
    assert document["operations"]["send_review_events"]["action"] == "send"
    assert document["operations"]["receive_order_events"]["action"] == "receive"
    sent = {ref["$ref"].rsplit("/", 1)[1] for ref in
            document["operations"]["send_review_events"]["messages"]}  # fmt: skip
    assert {f"shop.review.{e}.v1" for e in ("submitted", "approved", "rejected")} <= sent


def test_openapi_documents_every_operation_and_its_security(reviews: FlaskClient) -> None:
    spec = reviews.get("/openapi.json").get_json()
    paths = spec["paths"]
    assert set(paths["/reviews"]) >= {"get", "post"}
    assert set(paths["/reviews/{review_id}"]) >= {"get", "patch", "delete"}
    assert "post" in paths["/reviews/{review_id}/moderation"]
    assert "get" in paths["/products/{product_id}/reviews"]
    assert "get" in paths["/customers/{username}/reviews"]
    assert paths["/admin/verified-purchases"]["get"]["security"] == [{"bearerAuth": []}]
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
