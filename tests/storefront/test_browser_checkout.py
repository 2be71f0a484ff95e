"""The double charge of issue 28, in a real browser: a live fault on inventory while a
shopper checks out, sees the order recorded and checks out again.

Exactly one order must exist once the fault is off, and the wallet be debited once.
Same processes and Chromium as tests/storefront/test_browser.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from selenium.webdriver.remote.webdriver import WebDriver

from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, customer_payload
from tests.storefront.test_browser import Shop, balance_of, browser, stock_shop, storefront

pytestmark = pytest.mark.processes
__all__ = ["browser", "storefront"]  # the module's fixtures, shared with test_browser.py

FAULTS = {
    "error": {"kind": "error", "route": "POST /internal/reservations", "status": 503},
    "latency": {"kind": "latency", "route": "POST /internal/reservations", "latency_ms": 3000},
}


@pytest.fixture
def inventory_fault(live_stack: Any) -> Iterator[Any]:
    """Switches a live fault on in inventory (as the console does); all off afterwards."""
    url = live_stack.url("inventory") + "/admin/faults"
    admin = {"Authorization": f"Bearer {live_stack.token(ADMIN_USERNAME, ADMIN_PASSWORD)}"}

    def switch(*faults: dict[str, Any]) -> None:
        answer = requests.put(url, json={"faults": list(faults)}, headers=admin, timeout=10)
        assert answer.status_code == 200, answer.text

    try:
        yield switch
    finally:
        requests.delete(url, headers=admin, timeout=10)


def orders_of(live_stack: Any, username: str, password: str) -> list[dict[str, Any]]:
    token = live_stack.token(username, password)
    answer = requests.get(
        live_stack.url("sales") + f"/customers/{username}/sales",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


@pytest.mark.parametrize("fault", ["error", "latency"])
def test_a_fault_on_inventory_never_turns_a_recorded_order_into_a_double_charge(
    storefront: str, browser: WebDriver, live_stack: Any, inventory_fault: Any, fault: str
) -> None:
    ids = stock_shop(live_stack)
    account = customer_payload(f"browser_dora_{fault}")
    registered = requests.post(live_stack.url("customers") + "/customers", json=account, timeout=30)
    assert registered.status_code == 201, registered.text
    token = live_stack.token(account["username"], account["password"])
    topped = requests.post(
        live_stack.url("customers") + f"/customers/{account['username']}/wallet/charge",
        json={"amount": "100.00"},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"dora-{fault}"},
        timeout=30,
    )
    assert topped.status_code == 200, topped.text
    shop = Shop(browser, storefront)
    shop.log_in(account["username"], account["password"])
    shop.go(f"/products/{ids['Alpine Desk Lamp']}")
    shop.submit("#add-to-cart")

    # Inventory fails (or is slow) while the shopper checks out, twice.
    inventory_fault(FAULTS[fault])
    seen = set()
    for _ in range(2):
        shop.go("/cart")
        shop.submit("#checkout")
        page = shop.text()
        assert "Your order is recorded and is being completed" in page, page
        assert "try again" not in page.lower(), page
        link = shop.find("#recorded-order").get_attribute("href") or ""
        seen.add(link.rsplit("/", 1)[-1])
    shop.shot(f"checkout-recorded-{fault}")
    assert len(seen) == 1  # both times the same order

    # The fault is switched off; checking out once more completes that same order.
    inventory_fault()
    deadline = time.monotonic() + 40
    while "/orders/" not in browser.current_url:
        assert time.monotonic() < deadline, shop.text()
        shop.go("/cart")
        if shop.find_all("#checkout"):
            shop.submit("#checkout")
        else:  # recovery completed it first: its lines left the cart
            shop.go(f"/orders/{next(iter(seen))}")
        if "/orders/" not in browser.current_url:
            time.sleep(1)
    assert browser.current_url.rsplit("/", 1)[-1] in seen
    orders = orders_of(live_stack, account["username"], account["password"])
    assert [o["id"] for o in orders] == list(seen), orders
    deadline = time.monotonic() + 40
    while orders[0]["status"] == "pending" and time.monotonic() < deadline:
        time.sleep(1)
        orders = orders_of(live_stack, account["username"], account["password"])
    assert [o["status"] for o in orders] == ["completed"]
    balance = balance_of(live_stack, account["username"], account["password"])
    assert Decimal(balance) == Decimal("60.00")  # 100.00 less one lamp at 40.00
