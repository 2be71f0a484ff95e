"""The storefront's browser tests' helpers: the browser on the shop, the goods it sells, and
what the services say behind it (screenshots go to ``results/storefront/``, git-ignored)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import requests
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from shopkit.config import PROJECT_ROOT
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME

T = TypeVar("T")

#: Where the browser tests' screenshots go (git-ignored).
SCREENSHOTS = PROJECT_ROOT / "results" / "storefront"
#: How long a browser test waits for a page or an element.
WAIT_S = 20

#: The products :func:`stock_shop` creates.
PRODUCTS: list[dict[str, Any]] = [
    {"name": "Alpine Desk Lamp", "category": "electronics", "price": "40.00", "stock": 10,
     "description": "Warm light on a heavy brass base."},
    {"name": "Cedar Salad Bowl", "category": "accessories", "price": "25.50", "stock": 10,
     "description": "Turned from one block of cedar."},
    {"name": "Merino Wool Scarf", "category": "clothes", "price": "30.00", "stock": 10,
     "description": "Soft, warm and machine washable."},
    {"name": "Copper Kettle", "category": "accessories", "price": "55.00", "stock": 3,
     "description": "Whistles when the water boils."},
]  # fmt: skip


def wait_for_next_page(driver: WebDriver, page: WebElement) -> None:
    """Wait until ``page`` (the old document's ``<html>``) has been replaced by the next one,
    and the next one is parsed.

    Mid-navigation chromedriver may report the old node as "not belonging to the
    document" rather than as stale; both mean the old page is gone. The new document
    may then still be loading: an element read at once (a flash message) may not be
    in it yet, so the wait ends only once it is no longer ``loading``.
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

    def parsed(_driver: WebDriver) -> bool:
        return driver.execute_script("return document.readyState") != "loading"

    wait = WebDriverWait(driver, WAIT_S)
    wait.until(replaced)
    wait.until(parsed)


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
        """The text of ``css``, looking again if a live update replaced it meanwhile."""
        return self._fresh(css, lambda element: element.text)

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
        self._fresh(css, lambda element: element.click())

    def _fresh(self, css: str, use: Callable[[WebElement], T]) -> T:
        """``use`` the element ``css``; found again (up to three times) when the page's live
        updates (server-sent events, htmx swaps) replaced it between the look and the use."""
        for _ in range(2):
            try:
                return use(self.find(css))
            except StaleElementReferenceException:
                pass  # replaced meanwhile: look again
        return use(self.find(css))

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
    """The customer's wallet balance, as they see it."""
    token = live_stack.token(username, password)
    wallet = requests.get(
        live_stack.url("customers") + f"/customers/{username}/wallet",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    return str(wallet.json()["balance"])
