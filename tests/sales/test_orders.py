"""Orders of several lines, the cart, and the order's life: shipped, delivered or cancelled.

The sales app runs in-process; customers and inventory are real processes.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from tests.support.identity import Identity, bearer
from tests.support.invariants import check_invariants
from tests.support.sales import Shop, fill_wallet, lines, place


def statuses(sale: dict[str, Any]) -> list[str]:
    return [entry["status"] for entry in sale["history"]]


def test_a_three_line_order_takes_every_line_and_one_debit(
    sales: FlaskClient, shop: Shop, database_url: str
) -> None:
    lamp = shop.product(price="2.50", stock=5, name="Lamp")
    desk = shop.product(price="10.00", stock=3, name="Desk")
    pen = shop.product(price="1.25", stock=10, name="Pen")
    buyer, token = shop.buyer("100.00")
    response = place(sales, token, (desk, 1), (lamp, 2), (pen, 4))
    assert response.status_code == 201, response.get_json()
    sale = response.get_json()
    assert sale["status"] == "completed"
    assert [
        (i["product_id"], i["product_name"], i["quantity"], i["unit_price"], i["line_total"])
        for i in sale["items"]
    ] == [
        (desk, "Desk", 1, "10.00", "10.00"),
        (lamp, "Lamp", 2, "2.50", "5.00"),
        (pen, "Pen", 4, "1.25", "5.00"),
    ]
    assert sale["total"] == "20.00"
    # The one-line fields are for one-line orders only.
    assert (sale["product_id"], sale["quantity"], sale["unit_price"]) == (None, None, None)
    assert statuses(sale) == ["pending", "completed"]
    assert shop.balance(buyer["username"]) == Decimal("80.00")
    assert (shop.stock(lamp), shop.stock(desk), shop.stock(pen)) == (3, 2, 6)
    reservation = shop.reservation(sale["id"])
    assert reservation is not None
    assert sorted((i["product_id"], i["quantity"]) for i in reservation["items"]) == sorted(
        [(desk, 1), (lamp, 2), (pen, 4)]
    )
    detail = sales.get(f"/sales/{sale['id']}", headers=bearer(token)).get_json()
    assert [s["step"] for s in detail["steps"]] == ["reserve", "debit", "complete"]
    assert detail["items"] == sale["items"]
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert (report.completed, report.units_sold, report.money_in_sales) == (1, 7, "20.00")


def test_a_one_line_order_keeps_its_top_level_fields(sales: FlaskClient, shop: Shop) -> None:
    lamp = shop.product(price="4.00", stock=5, name="Lamp")
    _, token = shop.buyer("100.00")
    sale = place(sales, token, (lamp, 3)).get_json()
    assert (sale["product_id"], sale["product_name"], sale["quantity"], sale["unit_price"]) == (
        lamp,
        "Lamp",
        3,
        "4.00",
    )
    assert [(i["product_id"], i["line_total"]) for i in sale["items"]] == [(lamp, "12.00")]


def test_one_short_line_refuses_the_whole_order(
    sales: FlaskClient, shop: Shop, database_url: str
) -> None:
    plenty = shop.product(price="1.00", stock=5)
    scarce = shop.product(price="1.00", stock=1, name="Scarce")
    gone = shop.product(price="1.00", stock=0, name="Gone")
    buyer, token = shop.buyer("100.00")
    response = place(sales, token, (plenty, 2), (scarce, 2), (gone, 1))
    assert response.status_code == 409
    problem = response.get_json()
    assert (problem["code"], problem["sale_status"]) == ("insufficient_stock", "failed")
    short = {(p["product_id"], p["available"], p["requested"]) for p in problem["products"]}
    assert short == {(scarce, 1, 2), (gone, 0, 1)}
    assert (shop.stock(plenty), shop.stock(scarce)) == (5, 1)
    assert shop.balance(buyer["username"]) == Decimal("100.00")
    kept = sales.get(f"/sales/{problem['sale_id']}", headers=bearer(token)).get_json()
    assert (kept["status"], kept["failure_code"], kept["total"]) == (
        "failed",
        "insufficient_stock",
        None,
    )
    assert shop.reservation(problem["sale_id"]) is None
    report = check_invariants(database_url)
    assert report.ok, report.violations


def test_an_unknown_product_in_an_order_is_404_naming_it(
    sales: FlaskClient, shop: Shop, database_url: str
) -> None:
    known = shop.product(stock=5)
    buyer, token = shop.buyer("100.00")
    response = place(sales, token, (known, 1), (987654321, 1))
    assert response.status_code == 404
    problem = response.get_json()
    assert problem["code"] == "not_found"
    assert problem["product_ids"] == [987654321]
    assert shop.stock(known) == 5
    assert shop.balance(buyer["username"]) == Decimal("100.00")
    assert check_invariants(database_url).ok


def test_funds_for_some_lines_only_refuse_the_order_and_release_all(
    sales: FlaskClient, shop: Shop, database_url: str
) -> None:
    a = shop.product(price="30.00", stock=5)
    b = shop.product(price="30.00", stock=5)
    buyer, token = shop.buyer("50.00")
    response = place(sales, token, (a, 1), (b, 1))
    assert response.status_code == 409
    assert response.get_json()["code"] == "insufficient_funds"
    assert (shop.stock(a), shop.stock(b)) == (5, 5)
    assert shop.reservation(response.get_json()["sale_id"])["status"] == "released"
    assert shop.balance(buyer["username"]) == Decimal("50.00")
    assert check_invariants(database_url).ok


@pytest.mark.parametrize(
    "body",
    [
        {"items": []},
        {"items": [{"product_id": 1000 + i, "quantity": 1} for i in range(51)]},
        {"items": [{"product_id": 1, "quantity": 1}, {"product_id": 1, "quantity": 2}]},
        {"items": [{"product_id": 1, "quantity": 0}]},
        {"items": [{"product_id": 1, "quantity": 1001}]},
        {"items": [{"product_id": 1, "quantity": 10**30}]},
        {"items": [{"product_id": 1}]},
        {"items": [{"product_id": 1, "quantity": 1, "price": "0.01"}]},
        {"items": {"product_id": 1, "quantity": 1}},
        {"items": [1, 2]},
        {"items": None},
        {"items": [{"product_id": 1, "quantity": 1}], "product_id": 1, "quantity": 1},
        {"items": [{"product_id": 1, "quantity": 1}], "quantity": 1},
        {},
    ],
)
def test_bad_orders_are_422_and_change_nothing(
    sales: FlaskClient, shop: Shop, count_rows: Callable[[str], int], body: dict[str, Any]
) -> None:
    product = shop.product(stock=5)
    buyer, token = shop.buyer("100.00")
    body = _with_product(body, product)
    response = sales.post("/sales", json=body, headers=bearer(token))
    assert response.status_code == 422, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "validation_error"
    assert count_rows("sales.sales") == 0
    assert shop.stock(product) == 5
    assert shop.balance(buyer["username"]) == Decimal("100.00")


def _with_product(body: dict[str, Any], product: int) -> dict[str, Any]:
    """Put a real product id where the parametrised body says 1."""
    items = body.get("items")
    if isinstance(items, list):
        items = [
            {**item, "product_id": product}
            if isinstance(item, dict) and item.get("product_id") == 1
            else item
            for item in items
        ]
        body = {**body, "items": items}
    if body.get("product_id") == 1:
        body = {**body, "product_id": product}
    return body


# --- the cart ----------------------------------------------------------------------------------


def cart(sales: FlaskClient, token: str) -> dict[str, Any]:
    response = sales.get("/cart", headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def put(sales: FlaskClient, token: str, product: int, quantity: Any) -> Any:
    return sales.put(f"/cart/items/{product}", json={"quantity": quantity}, headers=bearer(token))


def test_the_cart_from_first_item_to_a_completed_order(
    sales: FlaskClient, shop: Shop, database_url: str
) -> None:
    mug = shop.product(price="3.00", stock=10, name="Mug")
    tea = shop.product(price="4.50", stock=10, name="Tea")
    jam = shop.product(price="2.00", stock=10, name="Jam")
    buyer, token = shop.buyer("100.00")
    assert cart(sales, token) == {"items": [], "total": "0.00"}
    assert put(sales, token, mug, 2).status_code == 200
    assert put(sales, token, tea, 1).status_code == 200
    shown = put(sales, token, jam, 5).get_json()
    assert [(i["product_id"], i["product_name"], i["quantity"]) for i in shown["items"]] == [
        (mug, "Mug", 2),
        (tea, "Tea", 1),
        (jam, "Jam", 5),
    ]
    assert shown["total"] == "20.50"
    assert put(sales, token, jam, 1).get_json()["total"] == "12.50"  # sets, not adds
    assert sales.delete(f"/cart/items/{tea}", headers=bearer(token)).status_code == 204
    assert put(sales, token, tea, 2).status_code == 200
    shown = cart(sales, token)
    assert [(i["product_id"], i["line_total"], i["available"]) for i in shown["items"]] == [
        (mug, "6.00", True),
        (jam, "2.00", True),
        (tea, "9.00", True),
    ]
    assert shown["total"] == "17.00"
    # The cart shows today's price; the order pays the price reserved at checkout.
    changed = requests.patch(
        shop.stack.url("inventory") + f"/products/{tea}",
        json={"price": "5.00"},
        headers=shop.admin,
        timeout=10,
    )
    assert changed.status_code == 200
    assert cart(sales, token)["total"] == "18.00"
    placed = sales.post("/cart/checkout", headers=bearer(token))
    assert placed.status_code == 201, placed.get_json()
    order = placed.get_json()
    assert [(i["product_id"], i["quantity"], i["unit_price"]) for i in order["items"]] == [
        (mug, 2, "3.00"),
        (jam, 1, "2.00"),
        (tea, 2, "5.00"),
    ]
    assert order["total"] == "18.00"
    assert cart(sales, token) == {"items": [], "total": "0.00"}
    assert shop.balance(buyer["username"]) == Decimal("82.00")
    assert (shop.stock(mug), shop.stock(tea), shop.stock(jam)) == (8, 8, 9)
    assert sales.post("/cart/checkout", headers=bearer(token)).get_json()["code"] == "cart_empty"
    report = check_invariants(database_url)
    assert report.ok, report.violations


def test_a_refused_checkout_keeps_the_cart(sales: FlaskClient, shop: Shop) -> None:
    dear = shop.product(price="60.00", stock=10)
    _, token = shop.buyer("50.00")
    put(sales, token, dear, 1)
    refused = sales.post("/cart/checkout", headers=bearer(token))
    assert refused.status_code == 409
    assert refused.get_json()["code"] == "insufficient_funds"
    assert [(i["product_id"], i["quantity"]) for i in cart(sales, token)["items"]] == [(dear, 1)]


def test_a_checkout_retried_with_its_key_replays_the_order(
    sales: FlaskClient, shop: Shop, database_url: str
) -> None:
    mug = shop.product(price="3.00", stock=10)
    buyer, token = shop.buyer("100.00")
    put(sales, token, mug, 2)
    key = {"Idempotency-Key": "checkout-1"}
    first = sales.post("/cart/checkout", headers={**bearer(token), **key})
    again = sales.post("/cart/checkout", headers={**bearer(token), **key})
    assert first.status_code == again.status_code == 201
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert shop.balance(buyer["username"]) == Decimal("94.00")
    assert shop.stock(mug) == 8
    assert check_invariants(database_url).ok


def test_cart_edits_that_are_refused(sales: FlaskClient, shop: Shop) -> None:
    mug = shop.product(price="3.00", stock=1)
    archived = shop.product(price="3.00", stock=5, name="Old")
    _, token = shop.buyer("100.00")
    assert put(sales, token, 987654321, 1).status_code == 404
    for bad in (0, 101, -1, "2", 1.5, None, 10**30):
        response = put(sales, token, mug, bad)
        assert response.status_code == 422, bad
        assert response.mimetype == "application/problem+json"
    assert sales.put(f"/cart/items/{mug}", json={}, headers=bearer(token)).status_code == 422
    assert put(sales, token, mug, 1).status_code == 200
    assert put(sales, token, archived, 1).status_code == 200
    removed = requests.delete(
        shop.stack.url("inventory") + f"/products/{archived}", headers=shop.admin, timeout=10
    )
    assert removed.status_code == 204
    assert put(sales, token, archived, 2).status_code == 404
    # An archived product stays visible in the cart, unavailable and unpriced;
    # more units than the stock are unavailable too.
    assert put(sales, token, mug, 3).status_code == 200
    shown = {i["product_id"]: i for i in cart(sales, token)["items"]}
    assert (shown[archived]["available"], shown[archived]["unit_price"]) == (False, None)
    assert (shown[mug]["available"], shown[mug]["line_total"]) == (False, "9.00")
    assert sales.delete("/cart", headers=bearer(token)).status_code == 204
    assert cart(sales, token)["items"] == []


def test_the_cart_is_the_callers_own(sales: FlaskClient, shop: Shop, identity: Identity) -> None:
    mug = shop.product(stock=5)
    _, mine = shop.buyer("10.00")
    _, theirs = shop.buyer("10.00")
    put(sales, mine, mug, 2)
    assert cart(sales, theirs)["items"] == []
    assert sales.get("/cart").status_code == 401
    admin = bearer(identity.admin_token())
    assert sales.get("/cart", headers=admin).status_code == 403
    assert sales.post("/cart/checkout", headers=admin).status_code == 403


def test_a_full_cart_refuses_a_fifty_first_product(sales: FlaskClient, shop: Shop) -> None:
    _, token = shop.buyer("10.00")
    products = [shop.product(stock=5, name=f"Item {i}") for i in range(51)]
    for product in products[:50]:
        assert put(sales, token, product, 1).status_code == 200
    full = put(sales, token, products[50], 1)
    assert (full.status_code, full.get_json()["code"]) == (409, "cart_full")
    assert put(sales, token, products[0], 3).status_code == 200  # changing a line is fine
    assert len(cart(sales, token)["items"]) == 50


# --- shipment, delivery, cancellation -----------------------------------------------------------


def test_an_order_is_shipped_then_delivered(
    sales: FlaskClient, shop: Shop, identity: Identity
) -> None:
    lamp = shop.product(stock=5)
    _, token = shop.buyer("100.00")
    sale_id = place(sales, token, (lamp, 1)).get_json()["id"]
    admin = bearer(identity.admin_token())
    assert sales.post(f"/sales/{sale_id}/shipment", json={}, headers=bearer(token)).status_code == (
        403
    )
    early = sales.post(f"/sales/{sale_id}/delivery", headers=admin)
    assert (early.status_code, early.get_json()["code"], early.get_json()["sale_status"]) == (
        409,
        "invalid_transition",
        "completed",
    )
    shipped = sales.post(
        f"/sales/{sale_id}/shipment",
        json={"carrier": "  Parcelforce ", "tracking_number": "PF123"},
        headers=admin,
    )
    assert shipped.status_code == 200, shipped.get_json()
    body = shipped.get_json()
    assert (body["status"], body["carrier"], body["tracking_number"]) == (
        "shipped",
        "Parcelforce",
        "PF123",
    )
    assert body["shipped_at"] is not None
    again = sales.post(f"/sales/{sale_id}/shipment", json={}, headers=admin)
    assert (again.status_code, again.get_json()["sale_status"]) == (409, "shipped")
    delivered = sales.post(f"/sales/{sale_id}/delivery", headers=admin).get_json()
    assert delivered["status"] == "delivered"
    assert statuses(delivered) == ["pending", "completed", "shipped", "delivered"]
    late = sales.post(f"/sales/{sale_id}/cancellation", headers=bearer(token))
    assert (late.status_code, late.get_json()["sale_status"]) == (409, "delivered")
    bad = sales.post(f"/sales/{sale_id}/shipment", json={"carrier": ""}, headers=admin)
    assert bad.status_code == 422
    missing = sales.post(
        "/sales/00000000-0000-0000-0000-000000000000/shipment", json={}, headers=admin
    )
    assert missing.status_code == 404


def test_cancelling_refunds_the_total_and_returns_each_line_once(
    sales: FlaskClient, shop: Shop, database_url: str
) -> None:
    lamp = shop.product(price="2.50", stock=5)
    desk = shop.product(price="10.00", stock=3)
    pen = shop.product(price="1.25", stock=10)
    buyer, token = shop.buyer("100.00")
    sale = place(sales, token, (lamp, 2), (desk, 1), (pen, 4)).get_json()
    assert shop.balance(buyer["username"]) == Decimal("80.00")
    key = {"Idempotency-Key": "cancel-1"}
    cancelled = sales.post(f"/sales/{sale['id']}/cancellation", headers={**bearer(token), **key})
    assert cancelled.status_code == 200, cancelled.get_json()
    body = cancelled.get_json()
    assert body["status"] == "cancelled"
    assert body["cancelled_at"] is not None
    assert statuses(body) == ["pending", "completed", "cancelling", "cancelled"]
    assert shop.balance(buyer["username"]) == Decimal("100.00")
    assert (shop.stock(lamp), shop.stock(desk), shop.stock(pen)) == (5, 3, 10)
    assert shop.reservation(sale["id"])["status"] == "returned"
    replay = sales.post(f"/sales/{sale['id']}/cancellation", headers={**bearer(token), **key})
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (200, "true")
    assert replay.get_json()["status"] == "cancelled"
    again = sales.post(f"/sales/{sale['id']}/cancellation", headers=bearer(token))
    assert (again.status_code, again.get_json()["code"], again.get_json()["sale_status"]) == (
        409,
        "invalid_transition",
        "cancelled",
    )
    other_key = {"Idempotency-Key": "cancel-2"}
    assert (
        sales.post(
            f"/sales/{sale['id']}/cancellation", headers={**bearer(token), **other_key}
        ).status_code
        == 409
    )
    detail = sales.get(f"/sales/{sale['id']}", headers=bearer(token)).get_json()
    assert [s["step"] for s in detail["steps"]] == [
        "reserve",
        "debit",
        "complete",
        "refund",
        "return",
        "cancel",
    ]
    assert shop.balance(buyer["username"]) == Decimal("100.00")
    assert (shop.stock(lamp), shop.stock(desk), shop.stock(pen)) == (5, 3, 10)
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert (report.cancelled, report.completed, report.money_in_sales) == (1, 0, "0.00")


def test_who_may_cancel_and_what(sales: FlaskClient, shop: Shop, identity: Identity) -> None:
    lamp = shop.product(price="5.00", stock=5)
    buyer, token = shop.buyer("100.00")
    _, stranger = shop.buyer("100.00")
    first = place(sales, token, (lamp, 1)).get_json()["id"]
    second = place(sales, token, (lamp, 1)).get_json()["id"]
    assert sales.post(f"/sales/{first}/cancellation").status_code == 401
    assert sales.post(f"/sales/{first}/cancellation", headers=bearer(stranger)).status_code == 404
    service = bearer(identity.service_token("reviews"))
    assert sales.post(f"/sales/{first}/cancellation", headers=service).status_code == 403
    admin = bearer(identity.admin_token())
    assert sales.post(f"/sales/{first}/cancellation", headers=admin).status_code == 200
    failed = place(sales, token, (lamp, 100)).get_json()["sale_id"]
    refused = sales.post(f"/sales/{failed}/cancellation", headers=bearer(token))
    assert (refused.status_code, refused.get_json()["sale_status"]) == (409, "failed")
    shipped = sales.post(f"/sales/{second}/shipment", json={}, headers=admin)
    assert shipped.status_code == 200
    too_late = sales.post(f"/sales/{second}/cancellation", headers=bearer(token))
    assert (too_late.status_code, too_late.get_json()["sale_status"]) == (409, "shipped")
    assert shop.balance(buyer["username"]) == Decimal("95.00")
    bad = sales.post("/sales/not-a-uuid/cancellation", headers=bearer(token))
    assert bad.status_code == 404


def test_histories_filter_by_status(sales: FlaskClient, shop: Shop, identity: Identity) -> None:
    lamp = shop.product(price="5.00", stock=10)
    pen = shop.product(price="1.00", stock=10)
    buyer, token = shop.buyer("100.00")
    kept = place(sales, token, (lamp, 1), (pen, 2)).get_json()["id"]
    gone = place(sales, token, (lamp, 1)).get_json()["id"]
    assert sales.post(f"/sales/{gone}/cancellation", headers=bearer(token)).status_code == 200
    mine = f"/customers/{buyer['username']}/sales"
    cancelled = sales.get(f"{mine}?status=cancelled", headers=bearer(token)).get_json()
    assert [s["id"] for s in cancelled["items"]] == [gone]
    admin = bearer(identity.admin_token())
    sales.post(f"/sales/{kept}/shipment", json={}, headers=admin)
    shipped = sales.get("/sales?status=shipped", headers=admin).get_json()
    assert [s["id"] for s in shipped["items"]] == [kept]
    assert shipped["items"][0]["items"][1]["product_id"] == pen
    by_product = sales.get(f"/sales?product={pen}", headers=admin).get_json()
    assert [s["id"] for s in by_product["items"]] == [kept]
    # A buyer's own history by product (the storefront offers reviews to buyers only).
    mine_of_pen = sales.get(f"{mine}?product={pen}", headers=bearer(token)).get_json()
    assert [s["id"] for s in mine_of_pen["items"]] == [kept]
    mine_of_lamp = sales.get(f"{mine}?product={lamp}", headers=bearer(token)).get_json()
    assert {s["id"] for s in mine_of_lamp["items"]} == {kept, gone}


def test_only_paid_orders_count_as_purchases(
    sales: FlaskClient, shop: Shop, identity: Identity
) -> None:
    lamp = shop.product(price="5.00", stock=10)
    pen = shop.product(price="1.00", stock=10)
    buyer, token = shop.buyer("100.00")
    reader = bearer(identity.admin_token())  # the endpoint's one caller now

    def purchased(product: int) -> bool:
        url = f"/sales/purchases?customer_id={buyer['id']}&product_id={product}"
        return bool(sales.get(url, headers=reader).get_json()["purchased"])

    order = place(sales, token, (lamp, 1), (pen, 1)).get_json()["id"]
    assert purchased(lamp) and purchased(pen)
    admin = bearer(identity.admin_token())
    assert sales.post(f"/sales/{order}/shipment", json={}, headers=admin).status_code == 200
    assert purchased(pen)
    assert sales.post(f"/sales/{order}/delivery", headers=admin).status_code == 200
    assert purchased(pen)
    other = shop.product(price="1.00", stock=10)
    cancelled = place(sales, token, (other, 1)).get_json()["id"]
    assert sales.post(f"/sales/{cancelled}/cancellation", headers=bearer(token)).status_code == 200
    assert not purchased(other)
    poor = shop.product(price="500.00", stock=10)
    assert place(sales, token, (poor, 1)).status_code == 409
    assert not purchased(poor)


def test_an_order_of_many_lines_with_a_big_total(
    sales: FlaskClient, shop: Shop, database_url: str
) -> None:
    """50 lines of 1,000 units at the largest price: the total fits, and fails cleanly."""
    products = [
        shop.product(price="9999999999.99", stock=1000, name=f"Gold {i}") for i in range(50)
    ]
    _, token = shop.buyer("100.00")
    response = sales.post(
        "/sales", json=lines(*[(p, 1000) for p in products]), headers=bearer(token)
    )
    assert response.status_code == 409, response.get_json()
    assert response.get_json()["code"] == "insufficient_funds"
    kept = sales.get(f"/sales/{response.get_json()['sale_id']}", headers=bearer(token)).get_json()
    assert kept["total"] == "499999999999500.00"
    assert all(shop.stock(p) == 1000 for p in products[:3])
    report = check_invariants(database_url)
    assert report.ok, report.violations


def test_a_refund_the_wallet_cannot_take_leaves_the_order_completed(
    sales: FlaskClient, shop: Shop, identity: Identity, database_url: str
) -> None:
    """A wallet too near its maximum to take the refund back: the cancellation is refused as
    a whole (nothing refunded, nothing returned), the order is completed again, and it can be
    cancelled once the wallet has room."""
    lamp = shop.product(price="10.00", stock=5)
    buyer, token = shop.buyer("100.00")
    sale = place(sales, token, (lamp, 2)).get_json()
    fill_wallet(database_url, buyer["username"], Decimal("5.00"))  # the refund is 20.00
    full = shop.balance(buyer["username"])

    refused = sales.post(
        f"/sales/{sale['id']}/cancellation", headers={**bearer(token), "Idempotency-Key": "c-1"}
    )
    problem = refused.get_json()
    assert refused.status_code == 409, problem
    assert (problem["code"], problem["sale_status"], problem["reason"]) == (
        "refund_refused",
        "completed",
        "balance_limit",
    )
    order = sales.get(f"/sales/{sale['id']}", headers=bearer(token)).get_json()
    assert order["status"] == "completed" and order["cancelled_at"] is None
    assert order["completed_at"] == sale["completed_at"]
    assert statuses(order) == ["pending", "completed", "cancelling", "completed"]
    assert [(s["step"], s["outcome"]) for s in order["steps"]][-1] == ("refund", "refused")
    assert shop.balance(buyer["username"]) == full
    assert shop.stock(lamp) == 3
    assert check_invariants(database_url).ok

    admin = bearer(identity.admin_token())
    made_room = identity.client.post(
        f"/customers/{buyer['username']}/wallet/deduct",
        json={"amount": "50.00", "reason": "room for a refund"},
        headers=admin,
    )
    assert made_room.status_code == 200, made_room.get_json()
    again = sales.post(
        f"/sales/{sale['id']}/cancellation", headers={**bearer(token), "Idempotency-Key": "c-1"}
    )
    assert again.status_code == 200, again.get_json()
    assert statuses(again.get_json())[-2:] == ["cancelling", "cancelled"]
    assert shop.balance(buyer["username"]) == full - Decimal("50.00") + Decimal("20.00")
    assert shop.stock(lamp) == 5
    report = check_invariants(database_url)
    assert report.ok, report.violations


# --- a purchase replayed after its order moved on ------------------------------------------------

#: Every status the purchase path answers a retry under its key with.
REPLAY_STATUSES = {"201", "202", "404", "409", "422", "503"}


@pytest.mark.parametrize("path", ["/sales", "/cart/checkout"])
def test_the_api_document_declares_every_answer_of_a_replayed_purchase(
    sales: FlaskClient, path: str
) -> None:
    declared = sales.get("/openapi.json").get_json()["paths"][path]["post"]["responses"]
    assert set(declared) >= REPLAY_STATUSES, sorted(declared)
    moved_on = declared["202"]
    assert moved_on["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Sale"
    }
    assert "Idempotent-Replayed" in moved_on["description"]


@pytest.mark.parametrize("moved_on", ["shipped", "cancelled"])
def test_a_purchase_replayed_after_its_order_moved_on_is_the_order_as_it_stands(
    sales: FlaskClient, shop: Shop, identity: Identity, database_url: str, moved_on: str
) -> None:
    lamp = shop.product(price="4.00", stock=5)
    buyer, token = shop.buyer("20.00")
    key = {"Idempotency-Key": f"buy-{moved_on}"}
    first = place(sales, token, (lamp, 1), **key)
    assert first.status_code == 201, first.get_json()
    sale_id = first.get_json()["id"]
    if moved_on == "shipped":
        changed = sales.post(
            f"/sales/{sale_id}/shipment", json={}, headers=bearer(identity.admin_token())
        )
    else:
        changed = sales.post(f"/sales/{sale_id}/cancellation", headers=bearer(token))
    assert changed.status_code == 200, changed.get_json()
    again = place(sales, token, (lamp, 1), **key)
    assert again.status_code == 202, again.get_json()
    assert again.mimetype == "application/json"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == f"/sales/{sale_id}"
    assert (again.get_json()["id"], again.get_json()["status"]) == (sale_id, moved_on)
    # Nothing was bought again.
    expected = (Decimal("16.00"), 4) if moved_on == "shipped" else (Decimal("20.00"), 5)
    assert (shop.balance(buyer["username"]), shop.stock(lamp)) == expected
    declared = sales.get("/openapi.json").get_json()["paths"]["/sales"]["post"]["responses"]
    assert str(again.status_code) in declared
    assert check_invariants(database_url).ok
