"""Property-based run over the reviews service's own OpenAPI document: no input gives a 5xx."""

from __future__ import annotations

from flask import Flask

from tests.support.fuzz import fuzz_operations
from tests.support.identity import Identity, bearer
from tests.support.reviews import FakeShop, World


def test_no_input_causes_a_server_error(
    reviews_app: Flask, world: World, identity: Identity, shop: FakeShop
) -> None:
    # Some reviews to find, and a shop where every product exists and was bought,
    # so generated submissions reach the database.
    for product_id in (1, 2):
        world.approved_review(product_id)
    shop.everything = True
    admin_checked = fuzz_operations(reviews_app, world.admin)
    customer_checked = fuzz_operations(reviews_app, bearer(identity.new_customer()[1]))
    expected = {
        "POST /reviews",
        "GET /reviews",
        "GET /reviews/{review_id}",
        "PATCH /reviews/{review_id}",
        "DELETE /reviews/{review_id}",
        "GET /products/{product_id}/reviews",
        "GET /customers/{username}/reviews",
        "POST /reviews/{review_id}/moderation",
    }
    assert expected <= set(admin_checked)
    assert expected <= set(customer_checked)
    assert any(call[0] == "inventory" for call in shop.calls)  # submissions got past validation
