"""The storefront through the gateway: the real nginx with the repository's configuration in
front of the four services and the storefront, all real gunicorn processes.

The storefront lives under ``/shop/`` (its pages share paths with the API); the gateway
strips the prefix and says it in ``X-Forwarded-Prefix``, and every link, form, redirect and
static file of the storefront carries it.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
import requests

from shopkit.config import SERVICE_PORTS
from shopkit.registry import app
from tests.support.database import (
    CLOSED_ADDRESS,
    GATEWAY_DIR,
    STOREFRONT_PATH,
    site_config,
    upstream_names,
)
from tests.support.gateway import GatewayUnderTest, assert_problem, funded_shopper
from tests.support.identity import customer_payload

pytestmark = pytest.mark.processes

#: Every URL a page points at on its own site.
LOCAL_URL = re.compile(r'(?:href|src|action|hx-get|hx-post)="(/[^"]*)"')


def served_by(gateway: GatewayUnderTest, services: Any, method: str, path: str) -> tuple[str, Any]:
    """Send ``method path`` through the gateway: which app served it, and the response."""
    request_id = f"sf-{uuid.uuid4().hex}"
    response = requests.request(
        method,
        gateway.url + path,
        headers={"X-Request-ID": request_id},
        allow_redirects=False,
        timeout=10,
    )
    upstream = gateway.access(request_id)["upstream"]
    names = {f"127.0.0.1:{port}": name for name, port in services.ports.items()}
    return names.get(upstream, upstream), response


def test_root_sends_browsers_to_the_storefront(gateway: GatewayUnderTest) -> None:
    for path, status in (("/", 302), ("/shop", 301)):
        response = requests.get(gateway.url + path, allow_redirects=False, timeout=10)
        assert response.status_code == status
        assert response.headers["Location"] == STOREFRONT_PATH  # relative: any host, any port
    home = requests.get(gateway.url + "/", timeout=10)
    assert home.url == gateway.url + STOREFRONT_PATH and home.status_code == 200


def test_the_home_page_static_files_and_error_pages_are_the_storefronts(
    services: Any, gateway: GatewayUnderTest
) -> None:
    owner, home = served_by(gateway, services, "GET", STOREFRONT_PATH)
    assert owner == "storefront" and home.status_code == 200
    assert home.headers["Content-Type"].startswith("text/html")
    urls = LOCAL_URL.findall(home.text)
    assert urls and all(u.startswith(STOREFRONT_PATH) for u in urls), urls
    # A client's own prefix is replaced by the gateway's.
    spoofed = requests.get(
        gateway.url + STOREFRONT_PATH, headers={"X-Forwarded-Prefix": "/evil"}, timeout=10
    )
    assert "/evil" not in spoofed.text
    (css,) = [u for u in urls if u.startswith("/shop/static/") and u.endswith(".css")]
    owner, sheet = served_by(gateway, services, "GET", css)
    assert owner == "storefront" and sheet.status_code == 200
    assert sheet.headers["Content-Type"].startswith("text/css") and "{" in sheet.text
    # The storefront's own error pages pass through, not the gateway's problem documents.
    owner, missing = served_by(gateway, services, "GET", "/shop/no/such/page")
    assert owner == "storefront" and missing.status_code == 404
    assert missing.headers["Content-Type"].startswith("text/html")
    # Its Prometheus endpoint is not public, like the services'.
    owner, metrics = served_by(gateway, services, "GET", "/shop/metrics")
    assert owner == "" and assert_problem(metrics, 404, "not_found")


def test_logging_in_through_the_gateway_with_csrf_stays_under_the_prefix(
    services: Any, gateway: GatewayUnderTest
) -> None:
    funded_shopper(requests.Session(), gateway.url, "gw_sf_ada", "12.00")
    browser = requests.Session()
    wallet = browser.get(gateway.url + "/shop/wallet", allow_redirects=False, timeout=10)
    assert wallet.headers["Location"] == "/shop/login?next=/shop/wallet"
    form = browser.get(gateway.url + wallet.headers["Location"], timeout=10)
    assert form.status_code == 200
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form.text)
    assert token, form.text
    credentials = {"username": "gw_sf_ada", "password": customer_payload("gw_sf_ada")["password"]}
    # Without the form's token: the storefront's own 400 page, not the gateway's problem.
    refused = requests.post(gateway.url + "/shop/login", data=credentials, timeout=10)
    assert refused.status_code == 400 and "The form expired" in refused.text
    logged_in = browser.post(
        gateway.url + wallet.headers["Location"],
        data={**credentials, "csrf_token": token.group(1)},
        allow_redirects=False,
        timeout=10,
    )
    assert logged_in.status_code == 302, logged_in.text
    assert logged_in.headers["Location"] == "/shop/wallet"
    page = browser.get(gateway.url + "/shop/wallet", timeout=10)
    assert page.status_code == 200 and "12.00" in page.text
    assert all(u.startswith(STOREFRONT_PATH) for u in LOCAL_URL.findall(page.text))


def test_api_paths_the_storefront_also_has_still_reach_the_services(
    services: Any, gateway: GatewayUnderTest
) -> None:
    for path, owner, status in (
        ("/cart", "sales", 401),
        ("/products/1", "inventory", None),
        ("/reviews", "reviews", None),
        ("/customers", "customers", None),
    ):
        served, response = served_by(gateway, services, "GET", path)
        assert served == owner, (path, served)
        assert response.headers["Content-Type"].startswith("application/")
        if status is not None:
            assert response.status_code == status


def test_with_the_storefront_down_its_paths_are_a_502_problem(
    echo_gateway: GatewayUnderTest,
) -> None:
    # echo_gateway gives no storefront address: the gateway points it at a closed port.
    for path in (STOREFRONT_PATH, "/shop/cart"):
        assert_problem(requests.get(echo_gateway.url + path, timeout=10), 502, "bad_gateway")


def test_every_site_conf_defines_every_upstream_the_routes_use() -> None:
    names = upstream_names()
    assert set(names) == {*SERVICE_PORTS, "storefront"}
    upstream = re.compile(r"^upstream (\w+) \{\n    server ([^;]+);", re.M)
    committed = dict(upstream.findall((GATEWAY_DIR / "site.conf").read_text()))
    assert committed == {
        **{name: f"{name}:{port}" for name, port in SERVICE_PORTS.items()},
        "storefront": f"storefront:{app('storefront').port}",
    }  # Compose's and Kubernetes' service names and ports
    # make run and the tests: an app that is not running gets a closed port, not a hole.
    local = dict(upstream.findall(site_config("127.0.0.1:8000", {"sales": "127.0.0.1:5002"})))
    assert local == {**dict.fromkeys(names, CLOSED_ADDRESS), "sales": "127.0.0.1:5002"}
    with pytest.raises(ValueError, match="storefrnt"):
        site_config("127.0.0.1:8000", {"storefrnt": "127.0.0.1:8080"})
