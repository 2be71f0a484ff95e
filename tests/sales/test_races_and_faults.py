"""Real processes: racing buyers, and services killed in the middle of purchases."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
import requests

from tests.support.identity import Identity
from tests.support.invariants import check_invariants
from tests.support.live import LiveStack
from tests.support.sales import Shop, expire_leases, post_sale, recover

pytestmark = pytest.mark.processes


def test_race_of_ten_buyers_never_oversells(sales_deps: Any, shop: Shop, database_url: str) -> None:
    """10 buyers x 4 attempts on stock 10, each with money for 3: exactly 10 sold."""
    process = sales_deps.start("sales")
    product = shop.product(price="10.00", stock=10)
    buyers = [shop.buyer("30.00") for _ in range(10)]
    attempts = [(token, i) for _, token in buyers for i in range(4)]

    def attempt(arg: tuple[str, int]) -> int:
        return post_sale(process.url, arg[0], product, 1).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(attempt, attempts))
    assert statuses.count(201) == 10, statuses
    assert set(statuses) <= {201, 409}
    assert shop.stock(product) == 0
    spent = sum(Decimal("30.00") - shop.balance(b["username"]) for b, _ in buyers)
    assert spent == Decimal("100.00")  # money moved equals goods sold
    assert all(shop.balance(b["username"]) >= 0 for b, _ in buyers)
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert (report.units_sold, report.money_in_sales) == (10, "100.00")


def test_the_last_item_goes_to_exactly_one_of_eight_buyers(
    sales_deps: Any, shop: Shop, database_url: str
) -> None:
    process = sales_deps.start("sales")
    product = shop.product(price="10.00", stock=1)
    buyers = [shop.buyer("30.00") for _ in range(8)]

    def attempt(token: str) -> requests.Response:
        return post_sale(process.url, token, product, 1)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(attempt, [token for _, token in buyers]))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [409] * 7, [a.text for a in answers]
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"insufficient_stock"}
    assert shop.stock(product) == 0
    balances = sorted(shop.balance(b["username"]) for b, _ in buyers)
    assert balances == [Decimal("20.00")] + [Decimal("30.00")] * 7
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert (report.completed, report.failed, report.units_sold) == (1, 7, 1)


def test_concurrent_purchases_beyond_a_wallet_are_compensated(
    sales_deps: Any, shop: Shop, database_url: str
) -> None:
    """6 buyers with money for one item each send 2 purchases at once: one of each pair is
    refused at the debit, and its reservation is released while the other completes."""
    process = sales_deps.start("sales")
    product = shop.product(price="10.00", stock=20)
    buyers = [shop.buyer("10.00") for _ in range(6)]
    attempts = [token for _, token in buyers for _ in range(2)]

    def attempt(token: str) -> requests.Response:
        return post_sale(process.url, token, product, 1)

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(attempt, attempts))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 6 + [409] * 6, [a.text for a in answers]
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"insufficient_funds"}
    assert shop.stock(product) == 14
    assert all(shop.balance(b["username"]) == Decimal("0.00") for b, _ in buyers)
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert (report.completed, report.failed, report.units_sold) == (6, 6, 6)


def test_retry_storm_with_one_key_buys_once(sales_deps: Any, shop: Shop, database_url: str) -> None:
    """The same purchase sent 8 times at once under one Idempotency-Key: one sale, one charge."""
    process = sales_deps.start("sales")
    product = shop.product(price="7.00", stock=10)
    buyer, token = shop.buyer("50.00")

    def attempt(_: int) -> requests.Response:
        return post_sale(process.url, token, product, 2, key="storm-1")

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(attempt, range(8)))
    completed = [a for a in answers if a.status_code == 201]
    assert completed, [a.text for a in answers]
    # Every other answer is "still being processed": never a second purchase.
    assert all(a.json()["code"] == "sale_in_progress" for a in answers if a.status_code != 201)
    assert {a.json()["id"] for a in completed} == {completed[0].json()["id"]}
    # A later retry replays the finished sale.
    again = post_sale(process.url, token, product, 2, key="storm-1")
    assert (again.status_code, again.json()["id"]) == (201, completed[0].json()["id"])
    assert shop.balance(buyer["username"]) == Decimal("36.00")
    assert shop.stock(product) == 8
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert report.completed == 1


def arrange(
    stack: LiveStack, identity: Identity, buyers: int = 3
) -> tuple[int, list[tuple[dict[str, Any], str]]]:
    shop = Shop(stack, identity)
    product = shop.product(price="5.00", stock=20)
    return product, [shop.buyer("50.00") for _ in range(buyers)]


@pytest.mark.parametrize("victim", ["customers", "inventory"])
def test_dependency_killed_mid_purchases(
    fault_stack: LiveStack, identity: Identity, database_url: str, victim: str
) -> None:
    for service in ("customers", "inventory"):
        fault_stack.start(service)
    # One worker, so the customer-token keys it fetched before the kill stay cached
    # and every purchase gets as far as being recorded.
    sales = fault_stack.start("sales", workers=1, extra_env={"SALES_RECOVERY_INTERVAL": "0"})
    product, buyers = arrange(fault_stack, identity)
    tokens = [token for _, token in buyers]
    assert post_sale(sales.url, tokens[0], product, 1).status_code == 201

    fault_stack.kill(victim)
    keys = [f"after-kill-{uuid.uuid4()}" for _ in tokens]
    for token, key in zip(tokens, keys, strict=True):
        started = time.monotonic()
        response = post_sale(sales.url, token, product, 2, key=key)
        elapsed = time.monotonic() - started
        assert 500 <= response.status_code < 600, response.text
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert response.json()["code"] == "sale_pending"
        assert response.json()["reason"] == "dependency_unavailable"
        assert elapsed < 10, elapsed
    stalled = check_invariants(database_url, allow_pending=True)
    assert stalled.ok, stalled.violations
    assert stalled.pending == len(tokens)

    stalled_id = response.json()["sale_id"]

    fault_stack.start(victim)
    # The buyer's own retry with the same key finishes that purchase, once.
    retried = post_sale(sales.url, tokens[-1], product, 2, key=keys[-1])
    assert retried.status_code == 201, retried.text
    assert retried.json()["id"] == stalled_id
    done = recover(fault_stack)
    assert done.returncode == 0, done.stdout + done.stderr
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert report.pending == 0
    # Every purchase that was left pending was settled one way or the other, exactly once.
    assert report.completed + report.failed == 1 + len(tokens)
    # Funds and stock were ample, so every one of them completed: 1 + 3 x 2 units.
    assert (report.completed, report.units_sold) == (1 + len(tokens), 7)
    shop = Shop(fault_stack, identity)
    assert shop.stock(product) == 13
    balances = [shop.balance(b["username"]) for b, _ in buyers]
    assert balances == [Decimal("35.00"), Decimal("40.00"), Decimal("40.00")]


@pytest.mark.parametrize(
    ("crash_after", "balance"),
    [("reserve", "50.00"), ("debit", "50.00"), ("debit", "10.00"), ("release", "10.00")],
)
def test_sales_killed_between_saga_steps_is_settled_by_recovery(
    fault_stack: LiveStack, identity: Identity, database_url: str, crash_after: str, balance: str
) -> None:
    """Sales dies right after a step's answer arrived. Buying 3 x 5.00 with 50.00 completes;
    with 10.00 it must fail with the stock given back, even if the buyer tops up before
    recovery runs: the refused debit is replayed, not retried."""
    for service in ("customers", "inventory"):
        fault_stack.start(service)
    sales = fault_stack.start(
        "sales",
        workers=1,
        extra_env={"SALES_CRASH_AFTER": crash_after, "SALES_RECOVERY_INTERVAL": "0"},
    )
    shop = Shop(fault_stack, identity)
    product = shop.product(price="5.00", stock=20)
    buyer, token = shop.buyer(balance)
    with pytest.raises(requests.ConnectionError):
        post_sale(sales.url, token, product, 3)
    fault_stack.stop("sales")  # the whole sales process goes down mid-saga
    pending = check_invariants(database_url, allow_pending=True)
    assert pending.pending == 1
    expire_leases(database_url)  # the dead request's lease, here at once rather than in 15 s
    poor = balance == "10.00"
    if poor:
        topped_up = identity.client.post(
            f"/customers/{buyer['username']}/wallet/charge",
            json={"amount": "100.00"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert topped_up.status_code == 200

    # A restarted sales service settles it by itself: the periodic recovery pass.
    fault_stack.start(
        "sales", extra_env={"SALES_RECOVERY_AFTER": "0", "SALES_RECOVERY_INTERVAL": "1"}
    )
    deadline = time.monotonic() + 30
    report = check_invariants(database_url, allow_pending=True)
    while report.pending and time.monotonic() < deadline:
        time.sleep(0.5)
        report = check_invariants(database_url, allow_pending=True)
    assert report.ok, report.violations
    shop = Shop(fault_stack, identity)
    if poor:
        assert (report.pending, report.failed, report.units_sold) == (0, 1, 0)
        assert shop.balance(buyer["username"]) == Decimal("110.00")  # nothing taken
        assert shop.stock(product) == 20
        return
    assert (report.pending, report.completed, report.units_sold) == (0, 1, 3)
    assert shop.balance(buyer["username"]) == Decimal("35.00")  # charged once: 3 x 5.00
    assert shop.stock(product) == 17
