"""Group commit over real processes: concurrent purchases share batched reservations and
debits, each sale keeps its own outcome, and a crash between the batched steps is settled."""

from __future__ import annotations

from decimal import Decimal

import pytest
import requests

from tests.support.identity import Identity
from tests.support.invariants import check_invariants
from tests.support.live import LiveStack
from tests.support.sales import (
    Shop,
    all_at_once,
    counted,
    expire_leases,
    post_sale,
    recover,
    start_batching_sales,
)

pytestmark = pytest.mark.processes


def handled(stack: LiveStack, service: str, endpoint: str) -> float:
    """How many requests ``service`` answered at ``endpoint`` (its Flask endpoint name)
    since it started: the module's customers and inventory serve several tests, so a test
    compares this before and after what it does."""
    return counted(stack, service, "flask_http_request_duration_seconds_count", endpoint=endpoint)


def test_concurrent_purchases_share_batches_and_each_keeps_its_own_outcome(
    fault_stack: LiveStack, identity: Identity, database_url: str
) -> None:
    """16 purchases at once: 12 buyers for 8 units of one product, and 4 buyers who cannot
    pay for another. The batches hold refusals of both kinds beside successes, and every
    sale settles on its own."""
    sales = start_batching_sales(fault_stack, 16)
    reserve_batches = handled(fault_stack, "inventory", "internal.reserve_batch")
    debit_batches = handled(fault_stack, "customers", "internal.wallet_debit_batch")
    shop = Shop(fault_stack, identity)
    scarce = shop.product(price="10.00", stock=8)
    plenty = shop.product(price="10.00", stock=100, name="Plenty")
    rich = [shop.buyer("50.00") for _ in range(12)]
    poor = [shop.buyer("5.00") for _ in range(4)]
    answers = all_at_once(
        [lambda t=token: post_sale(sales, t, scarce, 1) for _, token in rich]
        + [lambda t=token: post_sale(sales, t, plenty, 1) for _, token in poor]
    )
    codes = [a.json().get("code") if a.status_code == 409 else a.status_code for a in answers]
    assert sorted(map(str, codes[:12])) == ["201"] * 8 + ["insufficient_stock"] * 4, codes
    assert codes[12:] == ["insufficient_funds"] * 4, codes
    assert shop.stock(scarce) == 0
    assert shop.stock(plenty) == 100  # the refused debits' reservations were released
    assert all(shop.balance(b["username"]) == Decimal("5.00") for b, _ in poor)
    spent = sum(Decimal("50.00") - shop.balance(b["username"]) for b, _ in rich)
    assert spent == Decimal("80.00")
    # They went out together: fewer batches than purchases, and the callees used the batch
    # endpoints.
    calls = counted(fault_stack, "sales", "shop_sales_batch_size_sum", step="reserve")
    batches = counted(fault_stack, "sales", "shop_sales_batch_size_count", step="reserve")
    assert calls == 16 and batches < 16, (calls, batches)
    assert handled(fault_stack, "inventory", "internal.reserve_batch") > reserve_batches
    assert handled(fault_stack, "customers", "internal.wallet_debit_batch") > debit_batches
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert (report.completed, report.failed, report.units_sold) == (8, 8, 8)


def test_batching_off_sends_every_sale_alone(
    fault_stack: LiveStack, identity: Identity, database_url: str
) -> None:
    sales = start_batching_sales(fault_stack, 8, SALES_BATCH_MAX="1")
    reserve_batches = handled(fault_stack, "inventory", "internal.reserve_batch")
    shop = Shop(fault_stack, identity)
    product = shop.product(price="1.00", stock=20)
    buyers = [shop.buyer("5.00") for _ in range(6)]
    answers = all_at_once([lambda t=token: post_sale(sales, t, product, 1) for _, token in buyers])
    assert [a.status_code for a in answers] == [201] * 6
    assert counted(fault_stack, "sales", "shop_sales_batch_size_count") == 0
    assert handled(fault_stack, "inventory", "internal.reserve_batch") == reserve_batches
    assert check_invariants(database_url).ok


def test_a_worker_killed_between_the_batched_reserve_and_debit_is_settled_by_recovery(
    fault_stack: LiveStack, identity: Identity, database_url: str
) -> None:
    """Six purchases reserved in one batch; the worker dies before any debit. Recovery
    drives each sale alone with the single endpoints: the batch's stored answers replay."""
    sales = start_batching_sales(fault_stack, 8, SALES_CRASH_AFTER="reserve")
    reserve_batches = handled(fault_stack, "inventory", "internal.reserve_batch")
    shop = Shop(fault_stack, identity)
    product = shop.product(price="4.00", stock=12)
    buyers = [shop.buyer("10.00") for _ in range(5)] + [shop.buyer("3.00")]

    def attempt(token: str) -> str:
        try:
            return str(post_sale(sales, token, product, 2).status_code)
        except requests.ConnectionError:
            return "dropped"

    outcomes = all_at_once([lambda t=token: attempt(t) for _, token in buyers])
    assert outcomes == ["dropped"] * 6
    assert handled(fault_stack, "inventory", "internal.reserve_batch") > reserve_batches
    fault_stack.kill("sales")
    # A request that had not recorded its order when the worker died left nothing at all.
    stranded = check_invariants(database_url, allow_pending=True)
    assert stranded.ok, stranded.violations
    assert 2 <= stranded.pending <= 6
    assert (stranded.completed, stranded.failed) == (0, 0)
    # At least one batch of two or more was reserved (and nothing debited) before the crash.
    assert 12 - 2 * stranded.pending <= shop.stock(product) <= 12 - 2 * 2
    expire_leases(database_url)  # the dead requests' leases, here at once rather than in 15 s
    settled = recover(fault_stack)
    assert f"examined {stranded.pending}:" in settled.stdout, settled.stdout + settled.stderr
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert report.completed + report.failed == stranded.pending
    assert report.units_sold == 2 * report.completed
    balances = [shop.balance(b["username"]) for b, _ in buyers]
    assert set(balances[:5]) <= {Decimal("2.00"), Decimal("10.00")}  # charged once, or never
    assert balances[:5].count(Decimal("2.00")) == report.completed
    assert balances[5] == Decimal("3.00")  # the poor buyer's debit was refused, if it came
    assert shop.stock(product) == 12 - report.units_sold  # refused or lost: stock back
