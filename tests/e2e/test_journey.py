"""A whole shopper's journey across the four services, all real gunicorn processes."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, customer_payload
from tests.support.invariants import check_invariants
from tests.support.reviews import once_purchase_known

pytestmark = pytest.mark.processes


class Api:
    """A tiny HTTP client of the running stack."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.http = requests.Session()

    def call(
        self, method: str, service: str, path: str, token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(
            method, self.stack.url(service) + path, headers=headers, timeout=30, **kwargs
        )


def test_shopper_journey(live_stack: Any, database_url: str) -> None:
    for service in ("customers", "inventory", "sales", "reviews"):
        live_stack.start(service)
    api = Api(live_stack)
    admin = api.call(
        "POST",
        "customers",
        "/auth/login",
        json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD},
    ).json()["access_token"]

    # The admin stocks the shop.
    created = api.call(
        "POST", "inventory", "/products/batch", admin,
        json={"products": [
            {"name": "Trail Running Shoes", "category": "clothes", "price": "89.90", "description": "Light and grippy.", "stock": 5},
            {"name": "Espresso Beans 1kg", "category": "food", "price": "18.50", "description": "Dark roast.", "stock": 40},
        ]},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    shoes = next(p["id"] for p in created.json()["items"] if p["category"] == "clothes")

    # A shopper registers, logs in and tops up.
    body = customer_payload("journey_jo")
    assert api.call("POST", "customers", "/customers", json=body).status_code == 201
    token = api.call(
        "POST",
        "customers",
        "/auth/login",
        json={"username": "journey_jo", "password": body["password"]},
    ).json()["access_token"]
    topped = api.call(
        "POST", "customers", "/customers/journey_jo/wallet/charge", token, json={"amount": "200.00"}
    )
    assert topped.json()["balance"] == "200.00"

    # Browses the catalog and looks at the shoes.
    catalog = api.call("GET", "sales", "/catalog", params={"q": "shoes"}).json()
    assert [(p["id"], p["price"]) for p in catalog["items"]] == [(shoes, "89.90")]
    assert api.call("GET", "sales", f"/catalog/{shoes}").json()["in_stock"] is True

    # Cannot review before buying.
    early = api.call(
        "POST",
        "reviews",
        "/reviews",
        token,
        json={"product_id": shoes, "rating": 5, "comment": "Looks great"},
    )
    assert early.status_code == 403

    # Buys two pairs (a retried request with the same key changes nothing).
    order = {"product_id": shoes, "quantity": 2}
    sale = api.call(
        "POST", "sales", "/sales", token, json=order, headers={"Idempotency-Key": "jo-1"}
    )
    again = api.call(
        "POST", "sales", "/sales", token, json=order, headers={"Idempotency-Key": "jo-1"}
    )
    assert sale.status_code == again.status_code == 201, sale.text
    assert sale.json()["total"] == "179.80"
    assert again.json()["id"] == sale.json()["id"]
    wallet = api.call("GET", "customers", "/customers/journey_jo/wallet", token).json()
    assert wallet["balance"] == "20.20"
    assert [e["kind"] for e in wallet["items"]] == ["sale_debit", "charge"]
    assert api.call("GET", "inventory", f"/products/{shoes}").json()["stock"] == 3

    # Cannot afford a third pair: refused, nothing charged, stock back.
    refused = api.call("POST", "sales", "/sales", token, json={"product_id": shoes, "quantity": 1})
    assert (refused.status_code, refused.json()["code"]) == (409, "insufficient_funds")
    assert api.call("GET", "inventory", f"/products/{shoes}").json()["stock"] == 3

    # Reviews it (once reviews learned the purchase from its order events, a moment after
    # the purchase); hidden until the admin approves it.
    review = once_purchase_known(
        lambda: api.call(
            "POST",
            "reviews",
            "/reviews",
            token,
            json={"product_id": shoes, "rating": 4, "comment": "Comfortable, runs small."},
        )
    )
    assert review.status_code == 201, review.text
    review_id = review.json()["id"]
    assert review.json()["status"] == "pending"
    assert api.call("GET", "reviews", f"/products/{shoes}/reviews").json()["summary"]["count"] == 0
    queue = api.call("GET", "reviews", "/reviews", admin, params={"status": "pending"}).json()
    assert [r["id"] for r in queue["items"]] == [review_id]
    moderated = api.call(
        "POST",
        "reviews",
        f"/reviews/{review_id}/moderation",
        admin,
        json={"action": "approve", "note": "fine"},
    )
    assert moderated.status_code == 200, moderated.text
    public = api.call("GET", "reviews", f"/products/{shoes}/reviews").json()
    assert public["summary"]["count"] == 1
    assert public["summary"]["average"] == "4.0"
    assert [r["comment"] for r in public["items"]] == ["Comfortable, runs small."]

    # History: one completed and one failed purchase, newest first.
    history = api.call("GET", "sales", "/customers/journey_jo/sales", token).json()
    assert [(s["status"], s["total"]) for s in history["items"]][::-1][0] == ("completed", "179.80")
    assert sorted(s["status"] for s in history["items"]) == ["completed", "failed"]
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert report.money_in_sales == "179.80"
