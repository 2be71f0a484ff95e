"""The storefront in a real browser: Debian's Chromium driven by Selenium over real processes.

Every service and the storefront run as gunicorn processes on free
ports (tests/support/live.py); Chromium is the distribution's package
(``/usr/bin/chromium`` with ``/usr/bin/chromedriver``; ``make test`` installs
them) and nothing is downloaded. Screenshots of the main pages go to
``results/storefront/`` (git-ignored).
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from shopkit.registry import SERVICE_NAMES
from tests.support.browser import Shop, balance_of, stock_shop, wait_for_next_page
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, customer_payload

pytestmark = pytest.mark.processes


def login_status(live_stack: Any, username: str, password: str) -> int:
    """The status of ``POST /auth/login`` with these credentials."""
    answer = requests.post(live_stack.url("customers") + "/auth/login",
                           json={"username": username, "password": password}, timeout=30)  # fmt: skip
    return answer.status_code


def test_shopper_buys_cancels_is_refunded_reviews_and_the_admin_approves(
    storefront: str, browser: WebDriver, live_stack: Any
) -> None:
    ids = stock_shop(live_stack)
    shop = Shop(browser, storefront)

    # A new shopper registers (and is logged in), then tops up.
    account = customer_payload("browser_bea")
    shop.go("/")
    shop.submit("#nav-register")
    shop.fill({k: str(account[k]) for k in ("username", "password", "full_name", "email", "age",
                                            "address", "gender", "marital_status")})  # fmt: skip
    shop.submit("#register")
    assert "Welcome, browser_bea" in shop.flash()
    shop.fill({"amount": "300"})
    shop.submit("#top-up")
    assert shop.text("#balance") == "$300.00"

    # Searches and fills a cart with three products, two of one of them.
    shop.add_from_search("lamp", "Alpine Desk Lamp")
    shop.add_from_search("cedar bowl", "Cedar Salad Bowl")
    shop.add_from_search("merino", "Merino Wool Scarf")
    shop.shot("catalogue")
    shop.go("/cart")
    lines = shop.find_all(".cart-line")
    assert len(lines) == 3
    lamp_line = shop.find(f'.cart-line[data-product-id="{ids["Alpine Desk Lamp"]}"]')
    quantity = lamp_line.find_element(By.NAME, "quantity")
    quantity.clear()
    quantity.send_keys("2")
    page = shop.find("html")
    lamp_line.find_element(By.CSS_SELECTOR, "button").click()
    wait_for_next_page(browser, page)
    assert shop.text("#cart-total") == "$135.50"
    shop.shot("cart")

    # Checks out and sees the order.
    shop.submit("#checkout")
    assert "your order is paid" in shop.flash()
    assert "paid" in shop.text("#order-status")
    assert len(shop.find_all(".order-line")) == 3
    assert shop.text("#order-total") == "$135.50"
    shop.shot("order")
    order_url = browser.current_url
    shop.go("/wallet")
    assert shop.text("#balance") == "$164.50"

    # Cancels it and sees the refund in the wallet.
    browser.get(order_url)
    shop.click("#confirm-cancel")
    shop.submit("#cancel-order")
    assert "money is back in your wallet" in shop.flash()
    assert "cancelled" in shop.text("#order-status")
    shop.go("/wallet")
    assert shop.text("#balance") == "$300.00"
    kinds = [row.get_attribute("class") for row in shop.find_all(".ledger-entry")]
    assert kinds and "kind-refund_credit" in kinds[0], kinds
    shop.shot("wallet")

    # Buys the lamp again (a cancelled order is not a purchase) and reviews it.
    shop.go(f"/products/{ids['Alpine Desk Lamp']}")
    shop.submit("#add-to-cart")
    shop.submit("#checkout")
    assert "paid" in shop.text("#order-status")
    shop.go(f"/products/{ids['Alpine Desk Lamp']}")
    shop.fill({"rating": "4", "comment": "Warm light and a sturdy base."})
    shop.submit("#submit-review")
    assert "once a moderator approves it" in shop.flash()
    assert "Warm light and a sturdy base." not in shop.text("#reviews .review-list")
    shop.log_out()

    # The admin approves it in the moderation queue ...
    shop.log_in(ADMIN_USERNAME, ADMIN_PASSWORD)
    shop.go("/admin/moderation")
    reviews = shop.find_all(".review")
    assert len(reviews) == 1 and "Warm light and a sturdy base." in reviews[0].text
    shop.shot("moderation")
    shop.submit(".review .approve")
    assert "approve done" in shop.flash()

    # ... and it appears on the product page, in the average and the histogram.
    shop.go(f"/products/{ids['Alpine Desk Lamp']}")
    assert "Warm light and a sturdy base." in shop.text("#reviews .review-list")
    assert shop.text("#average").startswith("4")
    shop.shot("product")

    # The console's system page shows every service ready.
    shop.go("/admin/system")
    for service in SERVICE_NAMES:
        row = shop.find(f'tr[data-service="{service}"]')
        assert "ready" in row.text and "ready" in (row.get_attribute("class") or ""), row.text
    # htmx refreshes the figures in place: the second reading gives rates.
    WebDriverWait(browser, 15).until(lambda d: "measuring" not in shop.text("#sales-rate"))
    assert shop.text('tr[data-service="sales"] td:nth-child(3)') != "…"
    shop.shot("system")

    # A latency fault is switched on in sales from its form, shown, and switched off again.
    shop.fill({"fault-sales-kind": "latency", "fault-sales-target": "route",
               "fault-sales-route": "POST /cart/checkout", "fault-sales-latency_ms": "50"})  # fmt: skip
    shop.submit("#faults-sales .switch-on")
    assert "switched on latency 50 ms on requests to POST /cart/checkout" in shop.flash()
    assert "latency 50 ms" in shop.text('tr[data-service="sales"] .live-faults')
    shop.submit("#faults-sales .switch-off")
    assert "switched off latency 50 ms" in shop.flash()
    assert "No fault is on." in shop.text("#faults-sales")

    # The admin deactivates the shopper (who can no longer log in), then reactivates her.
    shop.go("/admin/customers?q=browser_bea&active=all")
    shop.submit('tr[data-username="browser_bea"] .deactivate')
    shop.submit("#confirm-deactivation")  # the step that asks first
    assert "browser_bea is deactivated" in shop.flash()
    assert "deactivated" in shop.text('tr[data-username="browser_bea"] .account-status')
    assert login_status(live_stack, "browser_bea", account["password"]) == 401
    shop.submit('tr[data-username="browser_bea"] .reactivate')
    assert "browser_bea is active again" in shop.flash()
    assert shop.text('tr[data-username="browser_bea"] .account-status') == "active"
    assert login_status(live_stack, "browser_bea", account["password"]) == 200

    # The data page runs a small populate and follows it to the end.
    shop.go("/admin/data")
    shop.fill({"customers": "3", "products": "2", "seed": "7"})
    shop.submit("#populate-form button[type=submit]")
    assert "Started populate" in shop.flash()
    WebDriverWait(browser, 60).until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".job").get_attribute("data-running") == "false"
    )
    job = shop.find(".job")
    assert job.get_attribute("data-exit-code") == "0", shop.text("#job-output")
    assert "populate, seed 7" in shop.text("#job-output")
    shop.shot("data")


def test_checkout_with_too_little_money_shows_the_problem_and_keeps_the_cart(
    storefront: str, browser: WebDriver, live_stack: Any
) -> None:
    ids = stock_shop(live_stack)
    account = customer_payload("browser_ben")
    registered = requests.post(live_stack.url("customers") + "/customers", json=account, timeout=30)
    assert registered.status_code == 201, registered.text
    shop = Shop(browser, storefront)
    shop.log_in("browser_ben", account["password"])

    shop.go(f"/products/{ids['Copper Kettle']}")
    shop.submit("#add-to-cart")
    shop.submit("#checkout")
    problem = shop.text(".problem")
    assert "The wallet balance does not cover the total." in problem
    assert "Top up your wallet" in problem
    lines = shop.find_all(".cart-line")
    assert len(lines) == 1 and "Copper Kettle" in lines[0].text
    assert shop.text("#cart-total") == "$55.00"
    shop.shot("checkout-refused")
    assert balance_of(live_stack, "browser_ben", account["password"]) == "0.00"
    product = requests.get(
        live_stack.url("inventory") + f"/products/{ids['Copper Kettle']}", timeout=30
    )
    assert product.json()["stock"] == 3  # nothing kept for the refused order
