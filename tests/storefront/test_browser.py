"""The storefront in a real browser: Debian's Chromium driven by Selenium over real processes.

Every service and the storefront run as gunicorn processes on free
ports (tests/support/live.py); Chromium is the distribution's package
(``/usr/bin/chromium`` with ``/usr/bin/chromedriver``; ``.ci/run`` installs
them) and nothing is downloaded. Screenshots of the main pages go to
``results/storefront/`` (git-ignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from shopkit.config import PROJECT_ROOT
from shopkit.registry import SERVICE_NAMES
from tests.support.chromium import headless_chromium
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, customer_payload

pytestmark = pytest.mark.processes

SCREENSHOTS = PROJECT_ROOT / "results" / "storefront"
WAIT_S = 20

PRODUCTS = [
    {"name": "Alpine Desk Lamp", "category": "electronics", "price": "40.00", "stock": 10,
     "description": "Warm light on a heavy brass base."},
    {"name": "Cedar Salad Bowl", "category": "accessories", "price": "25.50", "stock": 10,
     "description": "Turned from one block of cedar."},
    {"name": "Merino Wool Scarf", "category": "clothes", "price": "30.00", "stock": 10,
     "description": "Soft, warm and machine washable."},
    {"name": "Copper Kettle", "category": "accessories", "price": "55.00", "stock": 3,
     "description": "Whistles when the water boils."},
]  # fmt: skip


@pytest.fixture(scope="module")
def storefront(live_stack: Any) -> str:
    """Every service and the storefront, running; the storefront's URL."""
    for service in SERVICE_NAMES:
        live_stack.start(service)
    secret = {"STOREFRONT_SECRET_KEY": "browser-test-secret"}
    return str(live_stack.start("storefront", workers=1, extra_env=secret).url)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium from the distribution, with a fresh profile."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with headless_chromium("--window-size=1280,1000") as driver:
        yield driver


def wait_for_next_page(driver: WebDriver, page: WebElement) -> None:
    """Wait until ``page`` (the old document's ``<html>``) has been replaced by the next one.

    Mid-navigation chromedriver may report the old node as "not belonging to the
    document" rather than as stale; both mean the old page is gone.
    """

    def replaced(_driver: WebDriver) -> bool:
        try:
            page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            if "does not belong to the document" in str(error):
                return True
            raise
        return False

    WebDriverWait(driver, WAIT_S).until(replaced)


class Shop:
    """The browser on the storefront, with the few moves the journeys need."""

    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url
        driver.delete_all_cookies()

    def go(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str = "main") -> str:
        return self.find(css).text

    def fill(self, fields: dict[str, str]) -> None:
        for name, value in fields.items():
            element = self.find(f"#{name}")
            if element.tag_name == "select":
                Select(element).select_by_value(value)
            else:
                element.clear()
                element.send_keys(value)

    def click(self, css: str) -> None:
        """Click ``css``, looking again if a live update replaced it meanwhile."""
        for attempt in range(3):
            try:
                self.find(css).click()
                return
            except StaleElementReferenceException:
                if attempt == 2:
                    raise

    def submit(self, css: str) -> None:
        """Click a submit button and wait until the next page has loaded."""
        page = self.find("html")
        self.click(css)
        wait_for_next_page(self.driver, page)

    def flash(self) -> str:
        return " ".join(e.text for e in self.find_all(".flash"))

    def shot(self, name: str) -> None:
        self.driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))

    def log_in(self, username: str, password: str) -> None:
        self.go("/login")
        self.fill({"username": username, "password": password})
        self.submit("#login")
        assert f"Logged in as {username}" in self.flash()

    def log_out(self) -> None:
        self.submit("#logout")
        assert "You are logged out" in self.flash()

    def add_from_search(self, words: str, name: str) -> None:
        """Search the catalogue and add the product named ``name`` from its card."""
        self.go("/")
        self.fill({"q": words})
        self.submit("#search button[type=submit]")
        cards = [c for c in self.find_all(".product-card") if name in c.text]
        assert len(cards) == 1, self.text()
        page = self.find("html")
        cards[0].find_element(By.CSS_SELECTOR, ".add-to-cart").click()
        wait_for_next_page(self.driver, page)
        assert "Added to your cart" in self.flash()


def stock_shop(live_stack: Any) -> dict[str, int]:
    """The admin creates the products through the inventory API; name → id."""
    token = live_stack.token(ADMIN_USERNAME, ADMIN_PASSWORD)
    created = requests.post(
        live_stack.url("inventory") + "/products/batch",
        json={"products": PRODUCTS},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    return {p["name"]: p["id"] for p in created.json()["items"]}


def balance_of(live_stack: Any, username: str, password: str) -> str:
    token = live_stack.token(username, password)
    wallet = requests.get(
        live_stack.url("customers") + f"/customers/{username}/wallet",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    return str(wallet.json()["balance"])


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
