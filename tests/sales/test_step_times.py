"""Each saga step carries the moment it happened, not the moment the sale was written."""

from __future__ import annotations

from datetime import datetime

from flask.testing import FlaskClient

from tests.support.identity import bearer
from tests.support.sales import Shop


def test_each_step_is_timed_when_it_happened(sales: FlaskClient, shop: Shop) -> None:
    product = shop.product(price="30.00", stock=3)
    _, token = shop.buyer("50.00")
    refused = sales.post(
        "/sales", json={"product_id": product, "quantity": 2}, headers=bearer(token)
    )
    assert refused.status_code == 409
    sale = sales.get(f"/sales/{refused.get_json()['sale_id']}", headers=bearer(token)).get_json()
    steps = sale["steps"]
    assert [s["step"] for s in steps] == ["reserve", "debit", "release", "fail"]
    times = [datetime.fromisoformat(s["created_at"]) for s in steps]
    # Three remote calls lie between the first and the last: strictly later, each one.
    assert times == sorted(times) and len(set(times)) == len(times), times
    created = datetime.fromisoformat(sale["created_at"])
    updated = datetime.fromisoformat(sale["updated_at"])
    assert created <= times[0] and times[-1] <= updated
