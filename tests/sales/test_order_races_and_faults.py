"""Orders over real processes: racing orders, cancellations, shipments and cart edits,
and dependencies or sales itself dying in the middle of a cancellation."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
import requests

from customers_service.models import MAX_BALANCE
from tests.support.identity import Identity
from tests.support.invariants import check_invariants
from tests.support.live import LiveStack
from tests.support.sales import Shop, expire_leases, fill_wallet, lines, recover

pytestmark = pytest.mark.processes


def call(
    base: str, method: str, path: str, token: str, key: str | None = None, **kwargs: Any
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    return requests.request(method, base + path, headers=headers, timeout=30, **kwargs)


def order(base: str, token: str, *pairs: tuple[int, int], key: str | None = None) -> Any:
    return call(base, "POST", "/sales", token, key, json=lines(*pairs))


def in_parallel(calls: list[Callable[[], requests.Response]]) -> list[requests.Response]:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda f: f(), calls))


def test_two_orders_sharing_the_last_unit_complete_at_most_once(
    sales_deps: Any, shop: Shop, database_url: str
) -> None:
    process = sales_deps.start("sales")
    last = shop.product(price="10.00", stock=1, name="Last")
    for _ in range(3):
        extras = [shop.product(price="1.00", stock=5) for _ in range(2)]
        buyers = [shop.buyer("50.00") for _ in range(2)]
        answers = in_parallel(
            [
                lambda t=token, x=extra: order(process.url, t, (x, 1), (last, 1))
                for (_, token), extra in zip(buyers, extras, strict=True)
            ]
        )
        codes = sorted(a.status_code for a in answers)
        assert codes in ([201, 409], [409, 409]), [a.text for a in answers]
        for answer in answers:
            if answer.status_code == 409:
                problem = answer.json()
                assert problem["code"] == "insufficient_stock"
                assert [p["product_id"] for p in problem["products"]] == [last]
        # The loser's other line was not taken either.
        assert sorted(shop.stock(x) for x in extras) == ([4, 5] if 201 in codes else [5, 5])
    assert shop.stock(last) == 0
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert report.completed == 1


def test_orders_locking_products_in_opposite_orders_never_deadlock(
    sales_deps: Any, shop: Shop, database_url: str
) -> None:
    """24 orders at once over four products listed in opposite orders: no 5xx (a deadlock
    would be one), no oversell, and every unit sold is paid for."""
    process = sales_deps.start("sales")
    products = [shop.product(price="1.00", stock=30) for _ in range(4)]
    buyers = [shop.buyer("100.00") for _ in range(6)]
    forward = [(p, 2) for p in products]
    backward = list(reversed(forward))
    calls = [
        lambda t=token, pairs=(forward if i % 2 else backward): order(process.url, t, *pairs)
        for i, (_, token) in enumerate(buyers * 4)
    ]
    answers = in_parallel(calls)
    codes = [a.status_code for a in answers]
    assert set(codes) <= {201, 409}, [a.text for a in answers if a.status_code not in (201, 409)]
    sold = codes.count(201)
    assert sold == 15  # 30 units of each product, 2 per order
    assert all(shop.stock(p) == 0 for p in products)
    spent = sum(Decimal("100.00") - shop.balance(b["username"]) for b, _ in buyers)
    assert spent == Decimal(sold * 8)
    report = check_invariants(database_url)
    assert report.ok, report.violations


@pytest.mark.parametrize("with_key", [True, False])
def test_twenty_identical_cancellations_refund_once(
    sales_deps: Any, shop: Shop, database_url: str, with_key: bool
) -> None:
    process = sales_deps.start("sales")
    a = shop.product(price="3.00", stock=10)
    b = shop.product(price="4.00", stock=10)
    buyer, token = shop.buyer("50.00")
    sale = order(process.url, token, (a, 2), (b, 1)).json()
    assert shop.balance(buyer["username"]) == Decimal("40.00")
    key = "cancel-storm" if with_key else None
    path = f"/sales/{sale['id']}/cancellation"
    answers = in_parallel([lambda: call(process.url, "POST", path, token, key)] * 20)
    codes = [r.status_code for r in answers]
    assert codes.count(200) >= 1, [r.text for r in answers]
    assert set(codes) <= {200, 409}, [r.text for r in answers]
    expected_409 = {"cancellation_in_progress"} if with_key else {"invalid_transition"}
    assert {r.json()["code"] for r in answers if r.status_code == 409} <= expected_409 | {
        "cancellation_in_progress"
    }
    if not with_key:
        assert codes.count(200) == 1
    assert shop.balance(buyer["username"]) == Decimal("50.00")
    assert (shop.stock(a), shop.stock(b)) == (10, 10)
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert report.cancelled == 1


def test_a_cancellation_racing_a_shipment_exactly_one_wins(
    sales_deps: Any, shop: Shop, identity: Identity, database_url: str
) -> None:
    process = sales_deps.start("sales")
    product = shop.product(price="2.00", stock=20)
    buyer, token = shop.buyer("100.00")
    admin = identity.admin_token()
    outcomes = []
    for _ in range(6):
        sale_id = order(process.url, token, (product, 1)).json()["id"]
        cancel, ship = in_parallel(
            [
                lambda s=sale_id: call(process.url, "POST", f"/sales/{s}/cancellation", token),
                lambda s=sale_id: call(process.url, "POST", f"/sales/{s}/shipment", admin, json={}),
            ]
        )
        assert sorted([cancel.status_code, ship.status_code]) == [200, 409], (
            cancel.text,
            ship.text,
        )
        final = call(process.url, "GET", f"/sales/{sale_id}", token).json()["status"]
        assert final == ("cancelled" if cancel.status_code == 200 else "shipped")
        outcomes.append(final)
    shipped = outcomes.count("shipped")
    assert shop.balance(buyer["username"]) == Decimal("100.00") - 2 * shipped
    assert shop.stock(product) == 20 - shipped
    report = check_invariants(database_url)
    assert report.ok, report.violations


def test_a_checkout_racing_cart_edits_orders_one_consistent_cart(
    sales_deps: Any, shop: Shop, database_url: str
) -> None:
    """While the buyer changes the cart, checkout takes it as it stood at one moment."""
    process = sales_deps.start("sales")
    a, b, c = (shop.product(price="1.00", stock=100) for _ in range(3))
    _, token = shop.buyer("500.00")
    states = [{a: 1, b: 1}, {a: 2, b: 1}, {a: 2, b: 1, c: 3}, {a: 2, c: 3}]
    for _ in range(4):
        call(process.url, "DELETE", "/cart", token)
        for product, quantity in states[0].items():
            put = call(
                process.url, "PUT", f"/cart/items/{product}", token, json={"quantity": quantity}
            )
            assert put.status_code == 200

        def edit() -> requests.Response:
            call(process.url, "PUT", f"/cart/items/{a}", token, json={"quantity": 2})
            call(process.url, "PUT", f"/cart/items/{c}", token, json={"quantity": 3})
            return call(process.url, "DELETE", f"/cart/items/{b}", token)

        placed, _ = in_parallel([lambda: call(process.url, "POST", "/cart/checkout", token), edit])
        assert placed.status_code == 201, placed.text
        ordered = {i["product_id"]: i["quantity"] for i in placed.json()["items"]}
        assert ordered in states, ordered
    report = check_invariants(database_url)
    assert report.ok, report.violations


def _paid_order(stack: LiveStack, identity: Identity) -> tuple[str, str, str, list[int]]:
    shop = Shop(stack, identity)
    products = [shop.product(price="5.00", stock=10) for _ in range(3)]
    buyer, token = shop.buyer("50.00")
    sale = order(stack.url("sales"), token, *[(p, i + 1) for i, p in enumerate(products)]).json()
    assert sale["status"] == "completed", sale
    return sale["id"], token, buyer["username"], products


def _assert_cancelled_once(
    stack: LiveStack, identity: Identity, database_url: str, username: str, products: list[int]
) -> None:
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert (report.cancelled, report.unsettled) == (1, 0)
    shop = Shop(stack, identity)
    assert shop.balance(username) == Decimal("50.00")
    assert [shop.stock(p) for p in products] == [10, 10, 10]


@pytest.mark.parametrize("victim", ["customers", "inventory"])
def test_a_dependency_down_leaves_the_order_cancelling_then_recovery_finishes_it(
    fault_stack: LiveStack,
    identity: Identity,
    database_url: str,
    victim: str,
) -> None:
    for service in ("customers", "inventory"):
        fault_stack.start(service)
    sales = fault_stack.start("sales", workers=1, extra_env={"SALES_RECOVERY_INTERVAL": "0"})
    sale_id, token, username, products = _paid_order(fault_stack, identity)
    fault_stack.kill(victim)
    started = time.monotonic()
    answer = call(sales.url, "POST", f"/sales/{sale_id}/cancellation", token)
    assert time.monotonic() - started < 10
    assert answer.status_code == 503, answer.text
    problem = answer.json()
    assert (problem["code"], problem["sale_status"], problem["sale_id"]) == (
        "sale_pending",
        "cancelling",
        sale_id,
    )
    assert answer.headers["Retry-After"]
    stalled = check_invariants(database_url, allow_pending=True)
    assert stalled.unsettled == 1
    fault_stack.start(victim)
    done = recover(fault_stack)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 cancelled" in done.stdout
    _assert_cancelled_once(fault_stack, identity, database_url, username, products)


def test_recovery_gives_back_a_cancellation_whose_refund_the_wallet_refuses(
    fault_stack: LiveStack, identity: Identity, database_url: str
) -> None:
    """Left cancelling while customers was down, then the wallet filled up: recovery ends
    the cancellation (completed again, nothing refunded or returned) instead of retrying
    it forever."""
    for service in ("customers", "inventory"):
        fault_stack.start(service)
    sales = fault_stack.start("sales", workers=1, extra_env={"SALES_RECOVERY_INTERVAL": "0"})
    sale_id, token, username, products = _paid_order(fault_stack, identity)
    fault_stack.kill("customers")
    stuck = call(sales.url, "POST", f"/sales/{sale_id}/cancellation", token)
    assert (stuck.status_code, stuck.json()["sale_status"]) == (503, "cancelling"), stuck.text
    fill_wallet(database_url, username, Decimal("0.01"))
    fault_stack.start("customers")
    done = recover(fault_stack)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 cancelled, 1 cancellations refused, 0 still unsettled" in done.stdout
    sale = call(sales.url, "GET", f"/sales/{sale_id}", token).json()
    assert [entry["status"] for entry in sale["history"]][-2:] == ["cancelling", "completed"]
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert (report.completed, report.cancelled, report.unsettled) == (1, 0, 0)
    shop = Shop(fault_stack, identity)
    assert [shop.stock(p) for p in products] == [9, 8, 7]
    full = shop.balance(username)
    assert full == MAX_BALANCE - Decimal("0.01")
    assert recover(fault_stack).stdout.startswith("examined 0")  # nothing left to retry


@pytest.mark.parametrize("crash_after", ["refund", "return"])
def test_sales_killed_mid_cancellation_is_settled_by_recovery(
    fault_stack: LiveStack,
    identity: Identity,
    database_url: str,
    crash_after: str,
) -> None:
    """Sales dies right after the refund's or the stock return's answer arrived: the
    restarted service finishes the cancellation with the same keys, refunding once."""
    for service in ("customers", "inventory"):
        fault_stack.start(service)
    sales = fault_stack.start(
        "sales",
        workers=1,
        extra_env={"SALES_CRASH_AFTER": crash_after, "SALES_RECOVERY_INTERVAL": "0"},
    )
    sale_id, token, username, products = _paid_order(fault_stack, identity)
    with pytest.raises(requests.ConnectionError):
        call(sales.url, "POST", f"/sales/{sale_id}/cancellation", token, key=str(uuid.uuid4()))
    fault_stack.kill("sales")
    assert check_invariants(database_url, allow_pending=True).unsettled == 1
    expire_leases(database_url)  # the dead request's lease, here at once rather than in 15 s
    fault_stack.start(
        "sales", extra_env={"SALES_RECOVERY_AFTER": "0", "SALES_RECOVERY_INTERVAL": "1"}
    )
    deadline = time.monotonic() + 30
    while check_invariants(database_url, allow_pending=True).unsettled and (
        time.monotonic() < deadline
    ):
        time.sleep(0.5)
    _assert_cancelled_once(fault_stack, identity, database_url, username, products)
