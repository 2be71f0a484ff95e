"""The purchase saga over real customers and inventory processes."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.support.identity import Identity, bearer
from tests.support.invariants import check_invariants
from tests.support.sales import Shop


def buy(sales: FlaskClient, token: str, product_id: Any, quantity: Any, **headers: str) -> Any:
    return sales.post(
        "/sales",
        json={"product_id": product_id, "quantity": quantity},
        headers={**bearer(token), **headers},
    )


def test_happy_path_moves_money_and_stock_once(
    sales: FlaskClient, shop: Shop, database_url: str
) -> None:
    product = shop.product(price="12.50", stock=5, name="Lamp")
    buyer, token = shop.buyer("100.00")
    response = buy(sales, token, product, 2)
    assert response.status_code == 201, response.get_json()
    sale = response.get_json()
    assert sale["status"] == "completed"
    assert (sale["product_id"], sale["product_name"], sale["quantity"]) == (product, "Lamp", 2)
    assert (sale["unit_price"], sale["total"]) == ("12.50", "25.00")
    assert {"id", "created_at"} <= set(sale)
    assert shop.stock(product) == 3
    assert shop.balance(buyer["username"]) == Decimal("75.00")
    history = sales.get(f"/customers/{buyer['username']}/sales", headers=bearer(token)).get_json()
    assert [(s["id"], s["total"]) for s in history["items"]] == [(sale["id"], "25.00")]
    detail = sales.get(f"/sales/{sale['id']}", headers=bearer(token)).get_json()
    assert [s["step"] for s in detail["steps"]] == ["reserve", "debit", "complete"]
    assert check_invariants(database_url).ok


def test_retried_purchase_charges_once(sales: FlaskClient, shop: Shop, database_url: str) -> None:
    product = shop.product(price="10.00", stock=5)
    buyer, token = shop.buyer("100.00")
    first = buy(sales, token, product, 1, **{"Idempotency-Key": "order-1"})
    again = buy(sales, token, product, 1, **{"Idempotency-Key": "order-1"})
    assert first.status_code == again.status_code == 201
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = buy(sales, token, product, 2, **{"Idempotency-Key": "order-1"})
    assert other.status_code == 422
    assert other.get_json()["code"] == "idempotency_key_reused"
    assert shop.balance(buyer["username"]) == Decimal("90.00")
    assert shop.stock(product) == 4
    # Keys belong to one customer: another customer's same key is a new purchase.
    _, other_token = shop.buyer("100.00")
    assert buy(sales, other_token, product, 1, **{"Idempotency-Key": "order-1"}).status_code == 201
    assert shop.stock(product) == 3
    assert check_invariants(database_url).ok


def test_insufficient_funds_releases_the_stock(
    sales: FlaskClient, shop: Shop, database_url: str
) -> None:
    product = shop.product(price="30.00", stock=3)
    buyer, token = shop.buyer("50.00")
    response = buy(sales, token, product, 2)
    assert response.status_code == 409
    problem = response.get_json()
    assert problem["code"] == "insufficient_funds"
    assert response.mimetype == "application/problem+json"
    assert shop.stock(product) == 3
    assert shop.balance(buyer["username"]) == Decimal("50.00")
    assert shop.reservation(problem["sale_id"])["status"] == "released"
    kept = sales.get(f"/sales/{problem['sale_id']}", headers=bearer(token)).get_json()
    assert (kept["status"], kept["failure_code"]) == ("failed", "insufficient_funds")
    assert [s["step"] for s in kept["steps"]] == ["reserve", "debit", "release", "fail"]
    assert check_invariants(database_url).ok


def test_a_customer_deactivated_with_a_live_token_buys_nothing(
    sales: FlaskClient, shop: Shop, identity: Identity, database_url: str
) -> None:
    """An access token outlives a deactivation by up to its TTL; the debit still refuses,
    and the reserved stock is given back."""
    product = shop.product(price="5.00", stock=4)
    buyer, token = shop.buyer("50.00")
    gone = identity.client.delete(f"/customers/{buyer['username']}", headers=shop.admin)
    assert gone.status_code == 204
    response = buy(sales, token, product, 2)
    assert response.status_code == 409
    assert response.get_json()["code"] == "customer_inactive"
    assert shop.stock(product) == 4
    assert shop.balance(buyer["username"]) == Decimal("50.00")
    assert shop.reservation(response.get_json()["sale_id"])["status"] == "released"
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert (report.completed, report.failed) == (0, 1)


def test_a_failed_purchase_retried_with_its_key_stays_failed(
    sales: FlaskClient, shop: Shop, identity: Identity, database_url: str
) -> None:
    """Topping up and retrying under the same key replays the failed sale: nothing is bought."""
    product = shop.product(price="30.00", stock=3)
    buyer, token = shop.buyer("50.00")
    first = buy(sales, token, product, 2, **{"Idempotency-Key": "order-poor"})
    assert first.status_code == 409
    identity.client.post(
        f"/customers/{buyer['username']}/wallet/charge",
        json={"amount": "50.00"},
        headers=bearer(token),
    )
    again = buy(sales, token, product, 2, **{"Idempotency-Key": "order-poor"})
    assert again.status_code == 409
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["sale_id"] == first.get_json()["sale_id"]
    assert shop.balance(buyer["username"]) == Decimal("100.00")
    assert shop.stock(product) == 3
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert (report.completed, report.failed) == (0, 1)


def test_a_total_no_wallet_can_hold_fails_cleanly(
    sales: FlaskClient, shop: Shop, database_url: str
) -> None:
    """1,000 units at the largest price: the total is wider than any balance, yet the sale
    settles as failed (insufficient funds, stock given back), never stuck pending."""
    product = shop.product(price="9999999999.99", stock=5)
    buyer, token = shop.buyer("100.00")
    response = buy(sales, token, product, 2)
    assert response.status_code == 409, response.get_json()
    problem = response.get_json()
    assert problem["code"] == "insufficient_funds"
    kept = sales.get(f"/sales/{problem['sale_id']}", headers=bearer(token)).get_json()
    assert (kept["status"], kept["total"]) == ("failed", "19999999999.98")
    assert shop.stock(product) == 5
    assert shop.balance(buyer["username"]) == Decimal("100.00")
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert report.pending == 0


def test_insufficient_stock_charges_nothing(
    sales: FlaskClient, shop: Shop, database_url: str
) -> None:
    product = shop.product(price="1.00", stock=2)
    buyer, token = shop.buyer("100.00")
    response = buy(sales, token, product, 3)
    assert response.status_code == 409
    assert response.get_json()["code"] == "insufficient_stock"
    assert shop.balance(buyer["username"]) == Decimal("100.00")
    assert shop.stock(product) == 2
    history = sales.get(f"/customers/{buyer['username']}/sales", headers=bearer(token)).get_json()
    assert [(s["status"], s["failure_code"]) for s in history["items"]] == [
        ("failed", "insufficient_stock")
    ]
    assert check_invariants(database_url).ok


def test_unknown_product_is_404_and_kept_as_failed(sales: FlaskClient, shop: Shop) -> None:
    _, token = shop.buyer("10.00")
    response = buy(sales, token, 987654, 1)
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"
    sale = sales.get(f"/sales/{response.get_json()['sale_id']}", headers=bearer(token)).get_json()
    assert sale["failure_code"] == "product_not_found"


@pytest.mark.parametrize(
    "body",
    [
        {"product_id": 1, "quantity": 0},
        {"product_id": 1, "quantity": -1},
        {"product_id": 1, "quantity": 1.5},
        {"product_id": 1, "quantity": "2"},
        {"product_id": 1, "quantity": True},
        {"product_id": 1, "quantity": 1001},
        {"product_id": 1},
        {"quantity": 1},
        {"product_id": "1", "quantity": 1},
        {"product_id": 1, "quantity": 1, "price": "0.01"},
        {"product_id": 2**63, "quantity": 1},
    ],
)
def test_bad_input_is_422_and_nothing_happens(
    sales: FlaskClient, shop: Shop, count_rows: Callable[[str], int], body: dict[str, Any]
) -> None:
    product = shop.product(stock=5)
    buyer, token = shop.buyer("100.00")
    body = {**body, "product_id": product} if body.get("product_id") == 1 else body
    response = sales.post("/sales", json=body, headers=bearer(token))
    assert response.status_code == 422
    assert response.get_json()["code"] == "validation_error"
    assert count_rows("sales.sales") == 0
    assert shop.stock(product) == 5
    assert shop.balance(buyer["username"]) == Decimal("100.00")


def test_who_may_buy_and_read(sales: FlaskClient, shop: Shop, identity: Identity) -> None:
    product = shop.product(stock=5)
    buyer, token = shop.buyer("100.00")
    _, other = shop.buyer("0")
    admin = bearer(identity.admin_token())
    service = bearer(identity.service_token("reviews"))
    body = {"product_id": product, "quantity": 1}
    assert sales.post("/sales", json=body).status_code == 401
    assert sales.post("/sales", json=body, headers=admin).status_code == 403
    assert sales.post("/sales", json=body, headers=service).status_code == 403
    sale_id = buy(sales, token, product, 1).get_json()["id"]
    assert sales.get(f"/sales/{sale_id}").status_code == 401
    assert sales.get(f"/sales/{sale_id}", headers=bearer(other)).status_code == 404
    assert sales.get(f"/sales/{sale_id}", headers=admin).status_code == 200
    history = f"/customers/{buyer['username']}/sales"
    assert sales.get(history, headers=bearer(other)).status_code == 403
    assert sales.get(history).status_code == 401
    assert sales.get(history, headers=admin).get_json()["total"] == 1
    assert sales.get("/sales", headers=bearer(token)).status_code == 403
    listed = sales.get(
        f"/sales?customer={buyer['username']}&status=completed&product={product}", headers=admin
    )
    assert [s["id"] for s in listed.get_json()["items"]] == [sale_id]
    assert sales.get("/sales?status=nonsense", headers=admin).status_code == 422


def test_internal_purchases_for_admins(sales: FlaskClient, shop: Shop, identity: Identity) -> None:
    product = shop.product(stock=5)
    buyer, token = shop.buyer("100.00")
    buy(sales, token, product, 1)
    reader = bearer(identity.admin_token())  # reviews no longer calls: admins alone read it
    url = f"/sales/purchases?customer_id={buyer['id']}&product_id={product}"
    answer = sales.get(url, headers=reader).get_json()
    assert (answer["purchased"], answer["completed_sales"]) == (True, 1)
    other = sales.get(
        f"/sales/purchases?customer_id={buyer['id']}&product_id={product + 1}", headers=reader
    )
    assert other.get_json()["purchased"] is False
    assert sales.get(url, headers=bearer(token)).status_code == 403
    assert sales.get(url, headers=bearer(identity.service_token("reviews"))).status_code == 403
    assert sales.get(url).status_code == 401
    assert (
        sales.get("/sales/purchases?customer_id=x&product_id=1", headers=reader).status_code == 422
    )


def test_catalog_lists_goods_in_stock(sales: FlaskClient, shop: Shop) -> None:
    available = shop.product(price="3.00", stock=2, name="Available Apple")
    shop.product(price="4.00", stock=0, name="Sold Out Apple")
    page = sales.get("/catalog?q=apple").get_json()
    assert [(p["id"], p["name"], p["price"]) for p in page["items"]] == [
        (available, "Available Apple", "3.00")
    ]
    detail = sales.get(f"/catalog/{available}").get_json()
    assert (detail["name"], detail["price"], detail["in_stock"]) == (
        "Available Apple",
        "3.00",
        True,
    )
    assert sales.get("/catalog/99999999").status_code == 404
    assert sales.get("/catalog?page_size=500").status_code == 422


def test_catalog_reads_and_validates_the_query_like_products(
    sales: FlaskClient, shop: Shop
) -> None:
    cheap = shop.product(price="2.00", stock=3, name="Cheap Pear")
    dear = shop.product(price="9.00", stock=3, name="Dear Pear")
    by_price = sales.get("/catalog?q=pear&sort=-price").get_json()
    assert [p["id"] for p in by_price["items"]] == [dear, cheap]
    above = sales.get("/catalog?q=pear&min_price=5.00").get_json()
    assert [p["id"] for p in above["items"]] == [dear]
    one = sales.get("/catalog?q=pear&page_size=1&sort=price").get_json()
    assert ([p["id"] for p in one["items"]], one["page_size"], one["total"]) == ([cheap], 1, 2)
    for query in ("sort=bogus", "min_price=-1", "page_size=0", "min_price=5&max_price=1"):
        refused = sales.get(f"/catalog?{query}")
        assert refused.status_code == 422, query
        assert refused.get_json()["code"] == "validation_error"


def test_a_tight_recovery_loop_never_takes_a_new_sale(
    sales_app: Any, sales: Any, shop: Any, database_url: str
) -> None:
    """Issue 15, defect 5: ``recover --older-than 0`` in a loop beside the buyer. A new sale is
    leased to its request, so every first attempt completes (never ``sale_in_progress``)."""
    import threading

    from sales_service.recovery import recover_pending

    product = shop.product(price="1.00", stock=50)
    _, token = shop.buyer("100.00")
    stop = threading.Event()
    passes = []

    def loop() -> None:
        while not stop.is_set():
            passes.append(
                recover_pending(
                    sales_app.extensions["shop_db"],
                    sales_app.extensions["sales_clients"],
                    older_than_s=0,
                )
            )

    recovering = threading.Thread(target=loop, daemon=True)
    recovering.start()
    try:
        statuses = [
            sales.post(
                "/sales",
                json={"product_id": product, "quantity": 1},
                headers={"Authorization": f"Bearer {token}"},
            ).status_code
            for _ in range(20)
        ]
    finally:
        stop.set()
        recovering.join(timeout=30)
    assert statuses == [201] * 20
    assert len(passes) > 20  # recovery really ran alongside
    assert all(report.completed == 0 for report in passes)  # it never drove one of them
