"""The operations console in a real browser, on real data, at desktop and at phone width.

Every console page is opened with products, a customer, an order and a review
in the services (gunicorn processes, tests/support/live.py, on a real broker), and must render:
a 200, its heading, no error page, and no page wider than the screen. Then
the product journey runs: create a product (which lands on its page), edit
its price, restock, upload its image, archive and restore it; and a customer
is deactivated through the confirmation step. On the Events page, two unreadable
order events the notifications group dead-lettered are shown, one is replayed
and the other discarded. Chromium is the distribution's
(tests/support/chromium.py); the viewport is set exactly with the DevTools
protocol, as a phone's would be.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from notifications_service.notifications import GROUP
from shopkit.events.catalog import replay_stream
from shopkit.registry import SERVICE_NAMES
from tests.support.broker import connected
from tests.support.browser import SCREENSHOTS, Shop
from tests.support.chromium import headless_chromium
from tests.support.events import on_broker
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, customer_payload
from tests.support.notifications import dead_lettered
from tests.support.reviews import once_purchase_known

pytestmark = pytest.mark.processes

WIDTHS = {"desktop": 1400, "phone": 390}
#: The notifications group's dead letters on the Events page.
OURS = f'section.dead-letters[data-service="notifications"][data-group="{GROUP}"]'
#: The uploaded picture's colour (its background) and the placeholder's.
UPLOADED, PLACEHOLDER = [0x2A, 0x6F, 0x97], [0xEE, 0xF1, 0xF4]
IMAGE = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="240" height="180" viewBox="0 0 240 180">'
    b'<rect width="240" height="180" fill="#2a6f97"/><circle cx="120" cy="90" r="50" '
    b'fill="#f4b400"/></svg>'
)


@pytest.fixture(scope="module")
def console_url(live_stack: Any, broker: Any) -> Iterator[str]:
    """The services on a real broker (for this module), and the storefront; its URL."""
    with on_broker(live_stack, SERVICE_NAMES, broker.url):
        secret = {"STOREFRONT_SECRET_KEY": "console-browser-secret"}
        yield str(live_stack.start("storefront", workers=1, extra_env=secret).url)


@pytest.fixture(scope="module", params=list(WIDTHS), ids=list(WIDTHS))
def sized_browser(request: pytest.FixtureRequest) -> Iterator[tuple[WebDriver, str]]:
    """Headless Chromium whose viewport is exactly the width (``desktop`` or ``phone``)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = WIDTHS[request.param]
    with headless_chromium(f"--window-size={max(width, 500)},900") as driver:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            # Not "mobile": a phone would zoom out to fit a page too wide, and hide it.
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )
        yield driver, request.param


class Console(Shop):
    """The browser on the console, checking each page as it goes."""

    def __init__(self, driver: WebDriver, base_url: str, width: int) -> None:
        super().__init__(driver, base_url)
        self.width = width

    def status_of(self, path: str) -> int:
        """The page's HTTP status, asked with the browser's own session."""
        cookies = {c["name"]: c["value"] for c in self.driver.get_cookies()}
        answer = requests.get(self.base_url + path, cookies=cookies, timeout=30,
                              allow_redirects=False)  # fmt: skip
        return answer.status_code

    def renders(self, path: str, heading: str) -> None:
        """Open ``path``: a 200 with ``heading``, no error page, nothing wider than the screen."""
        assert self.status_of(path) == 200, path
        self.go(path)
        assert not self.find_all(".error-page"), (path, self.text())
        assert self.text("h1").startswith(heading), (path, self.text("h1"))
        self.fits(path)

    def fits(self, what: str) -> None:
        """The page scrolls only down: nothing pushes it wider than the screen."""
        page_width, viewport = self.driver.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert viewport == self.width, (what, viewport)
        assert page_width <= self.width, (what, page_width)

    def shown_colour(self, css: str) -> list[int]:
        """The colour the ``<img>`` at ``css`` shows near its top-left corner (RGB)."""
        return list(self.driver.execute_script(
            "const i = document.querySelector(arguments[0]); "
            "const c = document.createElement('canvas'); "
            "c.width = i.naturalWidth; c.height = i.naturalHeight; "
            "const g = c.getContext('2d'); g.drawImage(i, 0, 0); "
            "return Array.from(g.getImageData(4, 4, 1, 1).data).slice(0, 3)", css))  # fmt: skip

    def image_loaded(self, css: str) -> bool:
        """Whether the ``<img>`` at ``css`` has loaded a picture."""
        return bool(self.driver.execute_script(
            "const i = document.querySelector(arguments[0]); "
            "return i !== null && i.complete && i.naturalWidth > 0", css))  # fmt: skip


def shop_with_an_order_and_a_review(live_stack: Any, tag: str) -> dict[str, Any]:
    """Products, a customer who bought one and reviewed it: the console's real data."""
    admin = {"Authorization": f"Bearer {live_stack.token(ADMIN_USERNAME, ADMIN_PASSWORD)}"}
    products = [
        {"name": f"Harbour Lantern {tag}", "category": "accessories", "price": "32.00",
         "stock": 5, "description": "Storm-proof glass."},
        {"name": f"Rye Crackers {tag}", "category": "food", "price": "4.20", "stock": 40},
    ]  # fmt: skip
    created = requests.post(live_stack.url("inventory") + "/products/batch",
                            json={"products": products}, headers=admin, timeout=30)  # fmt: skip
    assert created.status_code == 201, created.text
    lantern = created.json()["items"][0]
    account = customer_payload(f"cons_{tag}", address="7 Quay Lane, Porthaven")
    registered = requests.post(live_stack.url("customers") + "/customers", json=account,
                               timeout=30)  # fmt: skip
    assert registered.status_code == 201, registered.text
    buyer = {
        "Authorization": f"Bearer {live_stack.token(account['username'], account['password'])}"
    }
    topped = requests.post(
        live_stack.url("customers") + f"/customers/{account['username']}/wallet/charge",
        json={"amount": "100.00"}, headers=buyer, timeout=30,
    )  # fmt: skip
    assert topped.status_code == 200, topped.text
    sale = requests.post(live_stack.url("sales") + "/sales",
                         json={"product_id": lantern["id"], "quantity": 1}, headers=buyer,
                         timeout=30)  # fmt: skip
    assert sale.status_code == 201, sale.text
    # Reviews learns the purchase from the order events, a moment after it.
    review = once_purchase_known(lambda: requests.post(
        live_stack.url("reviews") + "/reviews", headers=buyer, timeout=30,
        json={"product_id": lantern["id"], "rating": 5, "comment": "Bright and sturdy."}),
        timeout_s=30)  # fmt: skip
    assert review.status_code == 201, review.text
    return {"lantern": lantern, "username": account["username"], "sale_id": sale.json()["id"]}


def test_every_console_page_renders_and_a_product_is_created_edited_and_archived(
    console_url: str, sized_browser: tuple[WebDriver, str], live_stack: Any, tmp_path: Path
) -> None:
    driver, size = sized_browser
    data = shop_with_an_order_and_a_review(live_stack, size)
    lantern, username, sale_id = data["lantern"], data["username"], data["sale_id"]
    console = Console(driver, console_url, WIDTHS[size])
    console.log_in(ADMIN_USERNAME, ADMIN_PASSWORD)

    # Every page of the console, on real data.
    pages = [
        ("/admin/", "Operations console"),
        ("/admin/moderation", "Moderation"),
        ("/admin/moderation?status=approved", "Moderation"),
        ("/admin/products", "Products"),
        ("/admin/products?q=lantern&category=accessories", "Products"),
        ("/admin/products/new", "New product"),
        (f"/admin/products/{lantern['id']}", f"Product {lantern['id']}: {lantern['name']}"),
        ("/admin/customers", "Customers"),
        ("/admin/customers?active=all", "Customers"),
        (f"/admin/customers/{username}/deactivate", f"Deactivate {username}?"),
        ("/admin/orders", "Orders"),
        ("/admin/orders?status=completed", "Orders"),
        (f"/admin/orders/{sale_id}", f"Order {sale_id[:8]}"),
        ("/admin/system", "System"),
        ("/admin/events", "Events"),
        ("/admin/audit", "Audit"),
        ("/admin/data", "Data"),
    ]
    for path, heading in pages:
        console.renders(path, heading)
    assert console.status_of("/admin/data/progress") == 200  # the fragment the pages poll

    # What the pages say about that data.
    console.go("/admin/moderation")
    assert console.text(".review .product-name") == lantern["name"]
    console.go(f"/admin/orders/{sale_id}")
    assert console.text("#delivery-address") == "7 Quay Lane, Porthaven"
    console.go("/admin/customers?active=all")
    assert username in console.text(f'tr[data-username="{username}"]')
    console.shot(f"console-customers-{size}")

    # A new product lands on its page; its price is edited, it is restocked, given an
    # image, archived and restored.
    console.go("/admin/products")
    console.submit("#new-product")
    console.fill({"name": f"Tide Clock {size}", "category": "accessories", "price": "48.50",
                  "description": "Shows high and low water.", "stock": "3"})  # fmt: skip
    console.submit("#save-product")
    assert "created" in console.flash()
    heading = console.text("h1")
    assert heading.startswith("Product ") and heading.endswith(f": Tide Clock {size}"), heading
    product_id = int(heading.split(":")[0].removeprefix("Product "))
    assert console.find("#price").get_attribute("value") == "48.50"
    assert console.text("#admin-stock") == "3"
    console.fits("new product page")

    console.fill({"price": "52.00"})
    console.submit("#save-product")
    assert "Product saved." in console.flash()
    assert console.find("#price").get_attribute("value") == "52.00"

    console.fill({"quantity": "7"})
    console.submit("#restock")
    assert "Restocked 7." in console.flash()
    assert console.text("#admin-stock") == "10"

    assert (
        console.find("#admin-product-image")
        .get_attribute("src")
        .endswith(f"/products/{product_id}/image")
    )
    WebDriverWait(driver, 20).until(lambda _d: console.image_loaded("#admin-product-image"))
    assert console.shown_colour("#admin-product-image") == PLACEHOLDER  # none yet
    picture = tmp_path / "clock.svg"
    picture.write_bytes(IMAGE)
    console.find("#image").send_keys(str(picture))
    console.submit("#upload-image")
    assert "Image uploaded." in console.flash()
    WebDriverWait(driver, 20).until(lambda _d: console.image_loaded("#admin-product-image"))
    # The new picture shows at once (the placeholder seen before is not kept by the browser).
    assert console.shown_colour("#admin-product-image") == UPLOADED
    served = requests.get(console_url + f"/products/{product_id}/image", timeout=30)
    assert served.content == IMAGE and "X-Image-Placeholder" not in served.headers
    console.shot(f"console-product-{size}")

    console.submit("#archive")
    assert "Product archived." in console.flash()
    assert console.text(".status-archived") == "archived"
    console.submit("#restore")
    assert "Product restored." in console.flash()
    assert not console.find_all(".status-archived")
    product = requests.get(live_stack.url("inventory") + f"/products/{product_id}", timeout=30)
    assert product.json()["price"] == "52.00" and product.json()["stock"] == 10
    assert product.json()["archived"] is False

    # The shop shows the image on the catalogue and the product page; the placeholder
    # stands in for a product without one.
    console.go(f"/?q=tide+clock+{size}")
    card = f'.product-card[data-product-id="{product_id}"] .product-image'
    WebDriverWait(driver, 20).until(lambda _d: console.image_loaded(card))
    assert console.shown_colour(card) == UPLOADED
    console.go(f"/products/{lantern['id']}")
    WebDriverWait(driver, 20).until(lambda _d: console.image_loaded("#product-image"))
    assert console.shown_colour("#product-image") == PLACEHOLDER  # the lantern has none
    placeholder = requests.get(console_url + f"/products/{lantern['id']}/image", timeout=30)
    assert placeholder.headers["X-Image-Placeholder"] == "1"

    # Deactivating asks first; keeping the account changes nothing; confirming deactivates.
    console.go(f"/admin/customers?q={username}&active=all")
    console.submit(f'tr[data-username="{username}"] .deactivate')
    assert console.text("h1") == f"Deactivate {username}?"
    console.fits("confirmation page")
    console.submit("#keep-active")
    assert console.text(f'tr[data-username="{username}"] .account-status') == "active"
    console.submit(f'tr[data-username="{username}"] .deactivate')
    console.submit("#confirm-deactivation")
    assert f"{username} is deactivated" in console.flash()
    assert "deactivated" in console.text(f'tr[data-username="{username}"] .account-status')
    console.find(f'tr[data-username="{username}"] .reactivate')  # the way back is offered
    console.log_out()
    assert driver.find_elements(By.ID, "nav-login")


def test_the_events_page_shows_the_streams_and_replays_and_discards_dead_letters(
    console_url: str, sized_browser: tuple[WebDriver, str], live_stack: Any, broker: Any,
    database_url: str,
) -> None:  # fmt: skip
    driver, size = sized_browser
    shop_with_an_order_and_a_review(live_stack, f"ev{size}")  # order and wallet events
    letters = dead_lettered(database_url, broker.url, 2)
    replayed, discarded = letters
    console = Console(driver, console_url, WIDTHS[size])
    console.log_in(ADMIN_USERNAME, ADMIN_PASSWORD)
    console.renders("/admin/events", "Events")
    assert int(console.text('tr.stream[data-stream="events:order"] .stream-length')) >= 3
    group = 'tr.group[data-service="notifications"][data-stream="events:order"]'
    assert console.find(f"{group} .pending") and "entr" in console.text(f"{group} .lag")
    assert console.find('tr.outbox[data-service="sales"] .backlog')
    assert console.find('tr.outbox[data-service="customers"] .backlog')
    # Reviews' group reads the order stream too and may show the same entries: only ours.
    for dead_id in (replayed, discarded):
        letter = f'{OURS} li.dead-letter[data-id="{dead_id}"]'
        assert "not a CloudEvent" in console.text(f"{letter} .dead-letter-error")
    console.shot(f"console-events-{size}")

    console.submit(f'{OURS} li.dead-letter[data-id="{replayed}"] .replay')
    assert (
        f"Dead letter {replayed} of notifications/{GROUP} replayed to its group." in console.flash()
    )
    assert console.text("h1") == "Events"
    assert not console.find_all(f'{OURS} li.dead-letter[data-id="{replayed}"]')
    console.fits("events page after a replay")
    console.submit(f'{OURS} li.dead-letter[data-id="{discarded}"] .discard')
    assert f"Dead letter {discarded} of notifications/{GROUP} discarded." in console.flash()
    assert not console.find_all(f'{OURS} li.dead-letter[data-id="{discarded}"]')
    with connected(broker.url) as client:
        replays = [fields[b"entry_id"] for _, fields in client.xrange(replay_stream(GROUP))]
    assert len(replays) >= 1  # handed back to the group, through its replay stream
    # This run's letters, whatever an earlier run (the other width) left in the stream.
    assert letters[replayed].encode() in replays
    assert letters[discarded].encode() not in replays
