"""Putting stock back: release (unpaid sales) and return (refunded orders), guarded by customers.

Inventory asks the customers app (in-process, through its real endpoint and
ledger) whether a sale was paid or refunded; the sales are paid and refunded
through the customers app as the sales service does it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from tests.support.database import free_port
from tests.support.inventory import InProcessCustomers, Wallets, new_sale_id, reserve_items


@pytest.fixture
def order(
    inventory: FlaskClient, service: dict[str, str], make_product: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """A reserved two-line order: 2 of product ``a`` (stock 5), 3 of ``b`` (stock 7)."""
    a, b = make_product(stock=5)["id"], make_product(stock=7)["id"]
    response = reserve_items(inventory, service, [(a, 2), (b, 3)])
    assert response.status_code == 201
    return {"sale_id": response.get_json()["sale_id"], "a": a, "b": b}


def post(
    client: FlaskClient, headers: dict[str, str], sale_id: str, action: str, key: str | None = ""
) -> Any:
    """POST ``.../{sale_id}/{action}``: key ``{sale_id}:{action}``, or ``key``, or none (None)."""
    extra = {"Idempotency-Key": key or f"{sale_id}:{action}"} if key is not None else {}
    return client.post(f"/internal/reservations/{sale_id}/{action}", headers={**headers, **extra})


def test_release_of_an_unpaid_order_puts_every_line_back(
    inventory: FlaskClient,
    service: dict[str, str],
    order: dict[str, Any],
    stocks: Callable[[list[int]], list[int]],
) -> None:
    assert stocks([order["a"], order["b"]]) == [3, 4]
    released = post(inventory, service, order["sale_id"], "release")
    assert released.status_code == 200
    assert released.get_json()["status"] == "released"
    assert stocks([order["a"], order["b"]]) == [5, 7]
    again = post(inventory, service, order["sale_id"], "release", key=None)
    assert again.status_code == 200
    assert again.get_json()["released_at"] == released.get_json()["released_at"]
    assert stocks([order["a"], order["b"]]) == [5, 7]


def test_release_is_refused_for_a_paid_sale(
    inventory: FlaskClient,
    service: dict[str, str],
    order: dict[str, Any],
    wallets: Wallets,
    stocks: Callable[[list[int]], list[int]],
) -> None:
    wallets.debit(order["sale_id"])
    for key in (f"{order['sale_id']}:release", None):
        refused = post(inventory, service, order["sale_id"], "release", key=key)
        assert refused.status_code == 409
        assert refused.mimetype == "application/problem+json"
        assert refused.get_json()["code"] == "reservation_sold"
    stored = inventory.get(f"/internal/reservations/{order['sale_id']}", headers=service)
    assert stored.get_json()["status"] == "reserved"
    assert stocks([order["a"], order["b"]]) == [3, 4]


def test_return_waits_for_the_refund_then_puts_every_line_back_once(
    inventory: FlaskClient,
    service: dict[str, str],
    order: dict[str, Any],
    wallets: Wallets,
    stocks: Callable[[list[int]], list[int]],
    count_rows: Callable[[str], int],
) -> None:
    sale_id = order["sale_id"]
    early = post(inventory, service, sale_id, "return")
    assert early.status_code == 409
    assert early.get_json()["code"] == "not_refunded"
    wallets.debit(sale_id)
    paid = post(inventory, service, sale_id, "return")
    assert paid.get_json()["code"] == "not_refunded"  # paid, but not refunded yet
    assert stocks([order["a"], order["b"]]) == [3, 4]
    keys_before = count_rows("idempotency_keys")

    wallets.refund(sale_id)
    returned = post(inventory, service, sale_id, "return")  # the same key: the refusal was not kept
    assert returned.status_code == 200
    assert "Idempotent-Replayed" not in returned.headers
    body = returned.get_json()
    assert body["status"] == "returned"
    assert body["returned_at"]
    assert body["released_at"] is None
    assert stocks([order["a"], order["b"]]) == [5, 7]
    assert count_rows("idempotency_keys") == keys_before + 1

    replay = post(inventory, service, sale_id, "return")
    assert replay.headers["Idempotent-Replayed"] == "true"
    other_key = post(inventory, service, sale_id, "return", key="another-key")
    assert other_key.status_code == 200
    assert other_key.get_json()["returned_at"] == body["returned_at"]
    assert stocks([order["a"], order["b"]]) == [5, 7]
    listed = inventory.get("/internal/reservations?status=returned", headers=service).get_json()
    assert [r["sale_id"] for r in listed["items"]] == [sale_id]


def test_a_settled_repeat_does_not_ask_customers(
    inventory: FlaskClient,
    service: dict[str, str],
    order: dict[str, Any],
    customers_boundary: InProcessCustomers,
) -> None:
    post(inventory, service, order["sale_id"], "release")
    calls = customers_boundary.calls
    assert post(inventory, service, order["sale_id"], "release", key=None).status_code == 200
    assert post(inventory, service, order["sale_id"], "return").status_code == 409
    assert customers_boundary.calls == calls


def test_released_and_returned_exclude_each_other(
    inventory: FlaskClient,
    service: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
    wallets: Wallets,
    stocks: Callable[[list[int]], list[int]],
) -> None:
    product = make_product(stock=10)["id"]
    released = reserve_items(inventory, service, [(product, 1)]).get_json()["sale_id"]
    returned = reserve_items(inventory, service, [(product, 2)]).get_json()["sale_id"]
    assert post(inventory, service, released, "release").status_code == 200
    wallets.debit(returned)
    wallets.refund(returned)
    assert post(inventory, service, returned, "return").status_code == 200
    assert stocks([product]) == [10]

    not_returned = post(inventory, service, released, "return")
    assert not_returned.status_code == 409
    assert not_returned.get_json()["code"] == "reservation_released"
    not_released = post(inventory, service, returned, "release")
    assert not_released.status_code == 409
    assert not_released.get_json()["code"] == "reservation_returned"
    assert stocks([product]) == [10]


def test_unknown_sales_and_missing_keys(
    inventory: FlaskClient, service: dict[str, str], order: dict[str, Any]
) -> None:
    for action in ("release", "return"):
        missing = post(inventory, service, new_sale_id(), action)
        assert missing.status_code == 404
        assert missing.get_json()["code"] == "not_found"
    no_key = post(inventory, service, order["sale_id"], "return", key=None)
    assert no_key.status_code == 400
    assert no_key.get_json()["code"] == "idempotency_key_required"


@pytest.fixture
def customers_down(
    inventory_app: Flask, make_settings: Callable[..., Any]
) -> Iterator[Callable[[], None]]:
    """Inventory's real payments client, aimed at a port where nothing listens.

    Yields ``back()``, which brings the working customers boundary back.
    """
    from inventory_service.clients import build_payments_client

    settings = make_settings(
        "inventory", customers_url=f"http://127.0.0.1:{free_port()}", http_connect_timeout_s=0.2
    )
    working = inventory_app.extensions["inventory_payments"]
    inventory_app.extensions["inventory_payments"] = build_payments_client(settings)

    def back() -> None:
        inventory_app.extensions["inventory_payments"] = working

    try:
        yield back
    finally:
        back()


@pytest.mark.parametrize("action", ["release", "return"])
def test_customers_unreachable_is_503_not_stored_and_retried(
    inventory: FlaskClient,
    service: dict[str, str],
    order: dict[str, Any],
    wallets: Wallets,
    stocks: Callable[[list[int]], list[int]],
    customers_down: Callable[[], None],
    action: str,
) -> None:
    sale_id = order["sale_id"]
    down = post(inventory, service, sale_id, action)
    assert down.status_code == 503
    assert down.mimetype == "application/problem+json"
    assert down.get_json()["code"] == "dependency_unavailable"
    assert down.headers["Retry-After"]
    stored = inventory.get(f"/internal/reservations/{sale_id}", headers=service).get_json()
    assert stored["status"] == "reserved"
    assert stocks([order["a"], order["b"]]) == [3, 4]

    if action == "return":
        wallets.debit(sale_id)
        wallets.refund(sale_id)
    customers_down()  # customers is back: the retry under the same key is answered afresh
    retried = post(inventory, service, sale_id, action)
    assert retried.status_code == 200
    assert "Idempotent-Replayed" not in retried.headers
    assert stocks([order["a"], order["b"]]) == [5, 7]


def test_return_past_the_stock_limit_is_503_and_retried_later(
    inventory: FlaskClient,
    service: dict[str, str],
    order: dict[str, Any],
    wallets: Wallets,
    db_engine: Engine,
    stocks: Callable[[list[int]], list[int]],
) -> None:
    from inventory_service.models import MAX_STOCK

    sale_id = order["sale_id"]
    wallets.debit(sale_id)
    wallets.refund(sale_id)

    def set_stock(product_id: int, stock: int) -> None:
        with db_engine.begin() as conn:
            conn.execute(
                text("UPDATE inventory.products SET stock = :s WHERE id = :id"),
                {"s": stock, "id": product_id},
            )

    set_stock(order["b"], MAX_STOCK - 1)
    full = post(inventory, service, sale_id, "return")
    assert full.status_code == 503
    assert full.get_json()["code"] == "stock_limit"
    assert stocks([order["a"]]) == [3]  # the other line was not put back either
    set_stock(order["b"], 0)
    retried = post(inventory, service, sale_id, "return")
    assert retried.status_code == 200
    assert stocks([order["a"], order["b"]]) == [5, 3]
