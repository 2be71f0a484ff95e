"""The storefront's pages against a fake of the services' HTTP boundary."""

from __future__ import annotations

import dataclasses
import re
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from shopkit.config import Settings
from shopkit.service_client import DependencyUnavailable, ServiceResponse
from storefront.jobs import JobRunner
from tests.support.storefront import Call, FakeServices, access_token, log_in
from tests.support.storefront_answers import PRODUCT, SALE, SALE_ID, page_of

CART = {"items": [{"product_id": 7, "product_name": "Trail Shoes", "quantity": 2,
                   "unit_price": "89.90", "line_total": "179.80", "available": True}],
        "total": "179.80"}  # fmt: skip

# --- catalogue and product ----------------------------------------------------------------------


def test_catalogue_passes_the_filters_to_the_inventory_query(
    client: FlaskClient, fake: FakeServices
) -> None:
    fake.on("inventory", "GET", "/products", 200, page_of(PRODUCT))
    response = client.get(
        "/?q=shoes&category=clothes&min_price=10&max_price=100&in_stock=true&sort=-price&page=2"
    )
    assert response.status_code == 200
    assert "Trail Shoes" in response.text and "89.90" in response.text
    (call,) = fake.made("inventory", "GET", "/products")
    assert call.params == {
        "q": "shoes",
        "category": "clothes",
        "min_price": "10",
        "max_price": "100",
        "in_stock": "true",
        "sort": "-price",
        "page": 2,
        "page_size": 12,
    }


def test_catalogue_shows_the_services_validation_message(
    client: FlaskClient, fake: FakeServices
) -> None:
    fake.on("inventory", "GET", "/products", 422, {
        "code": "validation_error", "detail": "The request is not valid: see errors.",
        "errors": {"min_price": ["min_price must not exceed max_price."]}})  # fmt: skip
    response = client.get("/?min_price=50&max_price=10")
    assert response.status_code == 200
    assert "min_price must not exceed max_price." in response.text


def test_product_page_shows_stock_average_histogram_and_reviews(
    client: FlaskClient, fake: FakeServices
) -> None:
    fake.on("inventory", "GET", "/products/7", 200, PRODUCT)
    fake.on("reviews", "GET", "/products/7/reviews", 200, {
        **page_of({"id": 1, "username": "bob", "rating": 5, "comment": "Superb grip", "created_at": None}),
        "summary": {"count": 4, "average": "4.25", "histogram": {"5": 2, "4": 1, "3": 1}}})  # fmt: skip
    response = client.get("/products/7")
    assert response.status_code == 200
    assert "4 in stock" in response.text and "Superb grip" in response.text
    assert re.search(r'id="average">4.25<', response.text)
    assert 'max="4" value="2" aria-label="2 of 4 reviews gave 5 stars"' in response.text


def test_unknown_product_is_a_404_page(client: FlaskClient, fake: FakeServices) -> None:
    fake.on(
        "inventory", "GET", "/products/99", 404, {"code": "not_found", "detail": "No product 99."}
    )
    response = client.get("/products/99")
    assert response.status_code == 404 and "No product 99." in response.text


# --- sessions and access ------------------------------------------------------------------------


def test_pages_that_need_a_login_send_visitors_to_it(client: FlaskClient) -> None:
    for path in ("/cart", "/orders", "/wallet", "/profile", "/admin/", "/admin/system"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"] == f"/login?next={path}"


def test_admin_pages_refuse_customers(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    for path in ("/admin/", "/admin/moderation", "/admin/products", "/admin/data", "/admin/system"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "administrators only" in response.text
    assert (
        client.post(
            "/admin/data/populate", data={"customers": 1, "products": 1, "seed": 1}
        ).status_code
        == 403
    )
    assert not [c for c in fake.calls if c.path not in ("/auth/login",)]


def test_login_keeps_tokens_in_an_httponly_samesite_cookie_only(
    client: FlaskClient, fake: FakeServices
) -> None:
    token = access_token("ada")
    fake.on("customers", "POST", "/auth/login", 200,
            {"access_token": token, "refresh_token": "r-1", "expires_in": 900})  # fmt: skip
    response = client.post("/login", data={"username": "ada", "password": "pw-123456"})
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    fake.on("customers", "GET", "/customers/ada/wallet", 200, {"balance": "5.00", **page_of()})
    page = client.get("/wallet")
    assert page.status_code == 200 and "5.00" in page.text
    assert token not in page.text and "r-1" not in page.text
    (call,) = fake.made("customers", "GET", "/customers/ada/wallet")
    assert call.token == token


def test_the_session_cookie_is_encrypted_so_no_token_can_be_read_from_it(
    client: FlaskClient, fake: FakeServices
) -> None:
    import base64
    import zlib

    token = log_in(client, fake, "ada")
    value = client.get_cookie("shop_session").value
    readable = value
    for part in value.replace("-", "+").replace("_", "/").split("."):
        try:
            raw = base64.b64decode(part + "=" * (-len(part) % 4))
            readable += raw.decode(errors="ignore") + zlib.decompress(raw).decode(errors="ignore")
        except (ValueError, zlib.error):
            continue
    for secret in (token, token.split(".")[1], "refresh-1", "ada"):
        assert secret not in readable


def test_logout_revokes_the_refresh_token_and_a_copied_cookie_opens_nothing(
    client: FlaskClient, fake: FakeServices, app
) -> None:
    log_in(client, fake, "ada")
    fake.on("customers", "POST", "/auth/logout", 204)
    fake.on("customers", "GET", "/customers/ada/wallet", 200, {"balance": "5.00", **page_of()})
    assert client.get("/wallet").status_code == 200
    copied = client.get_cookie("shop_session").value

    response = client.post("/logout")
    assert response.status_code == 302
    (revoke,) = fake.made("customers", "POST", "/auth/logout")
    assert revoke.json == {"refresh_token": "refresh-1"}

    thief = app.test_client()
    thief.set_cookie("shop_session", copied)
    stolen = thief.get("/wallet")
    assert stolen.status_code == 302 and stolen.headers["Location"].startswith("/login")
    assert len(fake.made("customers", "GET", "/customers/ada/wallet")) == 1


def test_a_renewal_keeps_the_session_and_a_new_login_refuses_the_old_cookie(
    client: FlaskClient, fake: FakeServices, app
) -> None:
    log_in(client, fake, "ada", ttl_s=30)  # within the renewal margin
    fake.on("sales", "GET", "/cart", 200, CART)
    fake.on("customers", "POST", "/auth/refresh", 200,
            {"access_token": access_token("ada"), "refresh_token": "refresh-2",
             "expires_in": 900})  # fmt: skip
    first = _cart_key(client.get("/cart").text)  # renews the tokens
    assert fake.made("customers", "POST", "/auth/refresh")
    assert _cart_key(client.get("/cart").text) == first  # the checkout nonce survived
    old = client.get_cookie("shop_session").value
    log_in(client, fake, "ada")
    stale = app.test_client()
    stale.set_cookie("shop_session", old)
    assert stale.get("/cart").status_code == 302


def test_logout_ends_the_session_even_when_customers_cannot_revoke(
    client: FlaskClient, fake: FakeServices
) -> None:
    log_in(client, fake, "ada")
    fake.down.add("customers")
    assert client.post("/logout").status_code == 302
    assert client.get("/wallet").status_code == 302


def test_secure_cookies_are_the_default_in_production_mode(
    make_app, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STOREFRONT_SECURE_COOKIES", raising=False)
    development = Settings.from_env("storefront", log_level="WARNING")
    assert make_app(SETTINGS=development).config["SESSION_COOKIE_SECURE"] is False
    production = dataclasses.replace(development, environment="production")
    assert make_app(SETTINGS=production).config["SESSION_COOKIE_SECURE"] is True
    monkeypatch.setenv("STOREFRONT_SECURE_COOKIES", "0")
    assert make_app(SETTINGS=production).config["SESSION_COOKIE_SECURE"] is False


def test_a_refused_login_shows_the_services_detail(client: FlaskClient, fake: FakeServices) -> None:
    fake.on("customers", "POST", "/auth/login", 401,
            {"code": "invalid_credentials", "detail": "Wrong username or password."})  # fmt: skip
    response = client.post("/login", data={"username": "ada", "password": "nope-nope"})
    assert response.status_code == 401 and "Wrong username or password." in response.text


def test_an_expiring_token_is_renewed_with_the_refresh_token(
    client: FlaskClient, fake: FakeServices
) -> None:
    log_in(client, fake, "ada", ttl_s=30)  # within the renewal margin
    fresh = access_token("ada")
    fake.on("customers", "POST", "/auth/refresh", 200,
            {"access_token": fresh, "refresh_token": "refresh-2", "expires_in": 900})  # fmt: skip
    fake.on("sales", "GET", "/cart", 200, {"items": [], "total": "0.00"})
    assert client.get("/cart").status_code == 200
    (refresh,) = fake.made("customers", "POST", "/auth/refresh")
    assert refresh.json == {"refresh_token": "refresh-1"}
    assert fake.made("sales", "GET", "/cart")[0].token == fresh


def test_concurrent_requests_of_one_session_renew_its_tokens_once(
    client: FlaskClient, fake: FakeServices, app
) -> None:
    log_in(client, fake, "ada", ttl_s=30)  # within the renewal margin
    fresh = access_token("ada")
    spent: set[str] = set()

    def refresh(call: Call) -> ServiceResponse:
        # As the customers service does: a refresh token used twice revokes the login.
        presented = call.json["refresh_token"]
        if presented in spent:
            return ServiceResponse(401, {"code": "invalid_token", "detail": "Already used."})
        spent.add(presented)
        time.sleep(0.3)  # the other request arrives while this renewal is under way
        return ServiceResponse(
            200, {"access_token": fresh, "refresh_token": "refresh-2", "expires_in": 900}
        )

    fake.handle("customers", "POST", "/auth/refresh", refresh)
    fake.on("sales", "GET", "/cart", 200, {"items": [], "total": "0.00"})
    cookie = client.get_cookie("shop_session").value
    tabs = [app.test_client() for _ in range(2)]
    for tab in tabs:
        tab.set_cookie("shop_session", cookie)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda tab: tab.get("/cart"), tabs))
    assert [a.status_code for a in answers] == [200, 200]
    assert len(fake.made("customers", "POST", "/auth/refresh")) == 1
    assert [c.token for c in fake.made("sales", "GET", "/cart")] == [fresh, fresh]
    for tab in tabs:  # each tab goes on with the renewed session
        assert tab.get("/cart").status_code == 200
    assert len(fake.made("customers", "POST", "/auth/refresh")) == 1


def test_a_refused_refresh_ends_the_session(client: FlaskClient, fake: FakeServices) -> None:
    log_in(client, fake, "ada", ttl_s=30)
    fake.on(
        "customers", "POST", "/auth/refresh", 401, {"code": "invalid_token", "detail": "Revoked."}
    )
    response = client.get("/cart")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert client.get("/wallet").status_code == 302  # logged out for good


def test_a_401_from_a_service_logs_the_user_out(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("sales", "GET", "/cart", 401, {"code": "unauthorized", "detail": "Token revoked."})
    response = client.get("/cart")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_login_never_redirects_to_another_site(client: FlaskClient, fake: FakeServices) -> None:
    fake.on(
        "customers",
        "POST",
        "/auth/login",
        200,
        {"access_token": access_token("ada"), "refresh_token": "r"},
    )
    response = client.post(
        "/login?next=//evil.example/x", data={"username": "ada", "password": "pw-123456"}
    )
    assert response.headers["Location"] == "/"


def test_under_the_gateways_prefix_every_link_form_and_redirect_carries_it(
    client: FlaskClient, fake: FakeServices
) -> None:
    shop = {"X-Forwarded-Prefix": "/shop"}  # what the gateway sends for /shop/...
    fake.on("inventory", "GET", "/products", 200, page_of(PRODUCT))
    fake.on("inventory", "GET", "/products/7", 200, PRODUCT)
    fake.on("reviews", "GET", "/products/7/reviews", 200,
            {**page_of(), "summary": {"count": 0, "average": None, "histogram": {}}})  # fmt: skip
    for path in ("/", "/products/7", "/login"):
        page = client.get(path, headers=shop)
        assert page.status_code == 200, path
        urls = re.findall(r'(?:href|src|action|hx-get|hx-post)="(/[^"]*)"', page.text)
        assert urls and all(u.startswith("/shop/") for u in urls), (path, urls)
    assert "/shop/login?next=/shop/products/7" in client.get("/products/7", headers=shop).text
    # Sent to log in and back, all under the prefix; never to a path outside it.
    assert client.get("/cart", headers=shop).headers["Location"] == "/shop/login?next=/shop/cart"
    fake.on("customers", "POST", "/auth/login", 200,
            {"access_token": access_token("ada"), "refresh_token": "r"})  # fmt: skip
    form = {"username": "ada", "password": "pw-123456"}
    for target, landed in (("/shop/cart", "/shop/cart"), ("/cart", "/shop/")):
        response = client.post(f"/login?next={target}", data=form, headers=shop)
        assert response.headers["Location"] == landed
    # Without the header (directly on :8080) nothing changes.
    visitor = client.application.test_client()
    assert visitor.get("/orders").headers["Location"] == "/login?next=/orders"


def test_every_form_needs_a_csrf_token(make_app, fake: FakeServices) -> None:
    client = make_app(WTF_CSRF_ENABLED=True).test_client()
    form = client.get("/login")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form.text).group(1)
    refused = client.post("/login", data={"username": "ada", "password": "pw-123456"})
    assert refused.status_code == 400 and "The form expired" in refused.text
    assert not fake.made("customers", "POST", "/auth/login")
    fake.on(
        "customers",
        "POST",
        "/auth/login",
        200,
        {"access_token": access_token("ada"), "refresh_token": "r"},
    )
    accepted = client.post(
        "/login", data={"username": "ada", "password": "pw-123456", "csrf_token": token}
    )
    assert accepted.status_code == 302
    assert client.post("/logout").status_code == 400  # logging out is a form too


def test_register_creates_the_account_and_logs_in(client: FlaskClient, fake: FakeServices) -> None:
    fake.on("customers", "POST", "/customers", 201, {"username": "newbie", "balance": "0.00"})
    fake.on(
        "customers",
        "POST",
        "/auth/login",
        200,
        {"access_token": access_token("newbie"), "refresh_token": "r"},
    )
    form = {
        "username": "newbie",
        "password": "long-enough",
        "full_name": "New Bie",
        "email": "n@example.com",
        "age": "30",
        "address": "1 Road",
        "gender": "female",
        "marital_status": "single",
    }
    response = client.post("/register", data=form)
    assert response.status_code == 302 and response.headers["Location"] == "/wallet"
    (created,) = fake.made("customers", "POST", "/customers")
    assert created.json == {**form, "age": 30}


def test_register_shows_why_the_service_refused(client: FlaskClient, fake: FakeServices) -> None:
    fake.on(
        "customers",
        "POST",
        "/customers",
        409,
        {"code": "already_exists", "detail": "The username is taken."},
    )
    form = {
        "username": "taken",
        "password": "long-enough",
        "full_name": "T",
        "email": "t@example.com",
        "age": "30",
        "address": "1 Road",
        "gender": "female",
        "marital_status": "single",
    }
    response = client.post("/register", data=form)
    assert response.status_code == 422
    assert re.search(
        r'id="username"[^>]*>\s*<span class="field-error">This username is taken; choose another.',
        response.text,
    )
    fake.on("customers", "POST", "/customers", 422, {
        "code": "validation_error", "detail": "The request is not valid.",
        "errors": {"email": ["Not a valid email address."], "age": ["Must be 18 or more."]}})  # fmt: skip
    response = client.post("/register", data={**form, "username": "fresh"})
    assert response.status_code == 422
    assert "Please correct the fields marked below." in response.text
    assert re.search(
        r'id="email"[^>]*>\s*<span class="field-error">Not a valid email', response.text
    )
    assert re.search(
        r'id="age"[^>]*>\s*<span class="field-error">Must be 18 or more.', response.text
    )


def test_the_register_form_states_its_rules_and_presets_nothing(client: FlaskClient) -> None:
    page = client.get("/register").text
    assert "3 to 32 letters, digits, &#39;_&#39;, &#39;.&#39; or &#39;-&#39;" in page
    assert "Age (18 or older)" in page
    for name in ("gender", "marital_status"):
        select = re.search(rf'<select[^>]*id="{name}"[^>]*>(.*?)</select>', page, re.S)
        assert select is not None
        assert select.group(1).startswith('<option value="">Choose'), select.group(1)
        assert "selected" not in select.group(1)
    response = client.post("/register", data={"username": "ab", "password": "long-enough"})
    assert response.status_code == 422
    assert "Use 3 to 32 letters" in response.text and "Choose one." in response.text


def test_password_change_in_the_account_page(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("customers", "GET", "/customers/ada", 200, {"username": "ada", "full_name": "Ada",
            "email": "a@example.com", "age": 30, "address": "1 Elm Row", "gender": "female",
            "marital_status": "single", "balance": "0.00"})  # fmt: skip
    assert 'id="password-form"' in client.get("/profile").text
    fake.on("customers", "POST", "/customers/ada/password", 401,
            {"code": "invalid_credentials", "detail": "Wrong password."})  # fmt: skip
    wrong = {"current_password": "nope", "new_password": "a-new-secret"}
    response = client.post("/profile/password", data=wrong)
    assert response.status_code == 422 and "This is not your current password." in response.text
    assert client.get("/wallet").status_code != 302  # still logged in
    fake.on("customers", "POST", "/customers/ada/password", 204)
    response = client.post("/profile/password", data={**wrong, "current_password": "secret-pass"})
    assert response.status_code == 302
    changed = fake.made("customers", "POST", "/customers/ada/password")[-1]
    assert changed.json == {"current_password": "secret-pass", "new_password": "a-new-secret"}
    relogin = fake.made("customers", "POST", "/auth/login")[-1]
    assert relogin.json == {"username": "ada", "password": "a-new-secret"}


# --- cart, checkout, orders, wallet --------------------------------------------------------------


def test_add_to_cart_adds_to_the_quantity_already_there(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("sales", "GET", "/cart", 200, CART)
    fake.on("sales", "PUT", "/cart/items/7", 200, CART)
    response = client.post("/cart/items/7", data={"quantity": "3"})
    assert response.status_code == 302 and response.headers["Location"] == "/cart"
    (put,) = fake.made("sales", "PUT", "/cart/items/7")
    assert put.json == {"quantity": 5} and put.token == shopper


def test_checkout_sends_the_forms_idempotency_key_and_shows_the_order(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("sales", "POST", "/cart/checkout", 201, SALE)
    response = client.post("/cart/checkout", data={"key": "k-123"})
    assert response.status_code == 302 and response.headers["Location"] == f"/orders/{SALE_ID}"
    assert fake.made("sales", "POST", "/cart/checkout")[0].idempotency_key == "k-123"


def test_checkout_with_too_little_money_shows_the_problem_and_keeps_the_cart(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("sales", "POST", "/cart/checkout", 409, {
        "code": "insufficient_funds", "detail": "The wallet balance does not cover the total.",
        "sale_id": SALE_ID, "sale_status": "failed"})  # fmt: skip
    fake.on("sales", "GET", "/cart", 200, CART)
    response = client.post("/cart/checkout", data={"key": "k-1"})
    assert response.status_code == 409
    assert "The wallet balance does not cover the total." in response.text
    assert "Top up your wallet" in response.text
    assert "Trail Shoes" in response.text and 'id="cart-total">$179.80<' in response.text
    key = re.search(r'name="key" type="hidden" value="([^"]+)"', response.text).group(1)
    assert key != "k-1"  # a retry after topping up is a new attempt, not a replay of the refusal


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        ("dependency_unavailable", "Nothing was ordered: please try again"),
        ("database_unavailable", "Nothing was ordered: please try again"),
    ],
)
def test_a_503_checkout_that_recorded_nothing_says_so(
    client: FlaskClient, fake: FakeServices, shopper: str, code: str, hint: str
) -> None:
    fake.on("sales", "POST", "/cart/checkout", 503, {
        "code": code, "detail": "A dependency is unavailable."})  # fmt: skip
    fake.on("sales", "GET", "/cart", 200, CART)
    response = client.post("/cart/checkout", data={"key": "k-3"})
    assert response.status_code == 503
    assert "A dependency is unavailable." in response.text
    assert hint in response.text
    assert "Trail Shoes" in response.text


def _cart_key(page: str) -> str:
    found = re.search(r'name="key" type="hidden" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, {"code": "sale_pending", "detail": "The inventory service is unavailable; the "
               "purchase is pending and will be settled automatically.", "sale_id": SALE_ID,
               "sale_status": "pending", "dependency": "inventory"}),
        (409, {"code": "sale_in_progress", "detail": "This purchase is being processed right "
               "now; retry shortly.", "sale_id": SALE_ID}),
        (202, {**SALE, "status": "pending", "total": None}),
    ],
)  # fmt: skip
def test_a_recorded_checkout_says_recorded_with_a_link_never_try_again(
    client: FlaskClient, fake: FakeServices, shopper: str, status: int, body: dict
) -> None:
    fake.on("sales", "POST", "/cart/checkout", status, body)
    fake.on("sales", "GET", "/cart", 200, CART)
    before = _cart_key(client.get("/cart").text)
    response = client.post("/cart/checkout", data={"key": before})
    assert response.status_code == 202
    assert "Your order is recorded and is being" in response.text
    assert f'href="/orders/{SALE_ID}" id="recorded-order"' in response.text
    assert "try again" not in response.text.lower()
    # Checking out again sends the same key: sales answers with the same order.
    assert _cart_key(response.text) == before
    client.post("/cart/checkout", data={"key": before})
    assert {c.idempotency_key for c in fake.made("sales", "POST", "/cart/checkout")} == {before}


def test_the_cart_says_when_an_earlier_checkout_is_still_pending(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("sales", "GET", "/cart", 200, CART)
    fake.on("sales", "GET", "/customers/ada/sales", 200, page_of({**SALE, "status": "pending"}))
    page = client.get("/cart").text
    assert f'href="/orders/{SALE_ID}" id="recorded-order"' in page
    (call,) = fake.made("sales", "GET", "/customers/ada/sales")
    assert call.params["status"] == "pending"


def test_the_checkout_key_is_stable_for_the_carts_contents_until_it_is_paid(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("sales", "GET", "/cart", 200, CART)
    first = _cart_key(client.get("/cart").text)
    assert _cart_key(client.get("/cart").text) == first  # a reload, another tab
    fake.on("sales", "GET", "/cart", 200, {**CART, "items": [{**CART["items"][0], "quantity": 3}]})
    changed = _cart_key(client.get("/cart").text)
    assert changed != first
    fake.on("sales", "GET", "/cart", 200, CART)
    assert _cart_key(client.get("/cart").text) == first
    fake.on("sales", "POST", "/cart/checkout", 201, SALE)
    assert client.post("/cart/checkout", data={"key": first}).status_code == 302
    # Paid: the same contents bought again later are a new order.
    assert _cart_key(client.get("/cart").text) not in (first, changed)


def test_a_checkout_without_an_answer_says_the_order_may_exist(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("sales", "GET", "/cart", 200, CART)
    key = _cart_key(client.get("/cart").text)

    def no_answer(_call: object) -> None:
        raise DependencyUnavailable("sales")

    fake.handle("sales", "POST", "/cart/checkout", no_answer)  # type: ignore[arg-type]
    response = client.post("/cart/checkout", data={"key": key})
    assert response.status_code == 503
    assert "we cannot tell whether your order was placed" in response.text
    assert "Nothing was ordered" not in response.text
    assert _cart_key(response.text) == key


def test_insufficient_stock_names_the_short_lines(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("sales", "POST", "/cart/checkout", 409, {
        "code": "insufficient_stock", "detail": "Not enough stock of Trail Shoes (2 wanted, 1 left).",
        "products": [{"product_id": 7, "available": 1, "requested": 2}]})  # fmt: skip
    fake.on(
        "sales", "GET", "/cart", 200, {**CART, "items": [{**CART["items"][0], "available": False}]}
    )
    response = client.post("/cart/checkout", data={"key": "k-2"})
    assert response.status_code == 409
    assert "Not enough stock of Trail Shoes (2 wanted, 1 left)." in response.text
    assert "not enough in stock" in response.text


def test_order_page_shows_lines_history_steps_hidden_and_cancel(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("sales", "GET", f"/sales/{SALE_ID}", 200, SALE)
    response = client.get(f"/orders/{SALE_ID}")
    assert response.status_code == 200
    assert "Trail Shoes" in response.text and "179.80" in response.text
    assert 'id="cancel-order"' in response.text and "2025-01-01 10:00:01" in response.text
    assert "saga-steps" not in response.text  # the saga's steps are for the console


def test_cancelling_needs_the_confirmation_ticked(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("sales", "GET", f"/sales/{SALE_ID}", 200, SALE)
    page = client.get(f"/orders/{SALE_ID}").text
    assert 'id="confirm-cancel" required' in page
    response = client.post(f"/orders/{SALE_ID}/cancel", data={"key": "c-9"}, follow_redirects=True)
    assert "Tick the box to confirm" in response.text
    assert not fake.made("sales", "POST", f"/sales/{SALE_ID}/cancellation")


def test_orders_without_priced_lines_show_names_and_no_none(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    unpriced = {"product_id": 9, "product_name": None, "quantity": 1, "unit_price": None,
                "line_total": None}  # fmt: skip
    pending = {**SALE, "id": "p" + SALE_ID[1:], "status": "pending", "total": None,
               "items": [{**unpriced}]}  # fmt: skip
    failed = {**SALE, "id": "f" + SALE_ID[1:], "status": "failed", "total": None,
              "failure_code": "insufficient_stock", "items": [{**unpriced, "product_id": 8}]}  # fmt: skip
    fake.on("sales", "GET", "/customers/ada/sales", 200, page_of(SALE, pending, failed))
    fake.on("inventory", "GET", "/products", 200, page_of({**PRODUCT, "id": 9, "name": "Kettle"}))
    page = client.get("/orders").text
    assert "None" not in page
    times = "\N{MULTIPLICATION SIGN}"
    assert f"2 {times} Trail Shoes" in page and f"1 {times} Kettle" in page
    assert f"1 {times} product 8" in page
    assert "not charged yet" in page and "nothing charged" in page
    assert '<span class="status status-completed">paid</span>' in page
    (names,) = fake.made("inventory", "GET", "/products")
    assert names.params["ids"] == "8,9"


def test_your_reviews_name_the_products(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    review = {"id": 3, "product_id": 7, "rating": 4, "status": "pending", "comment": "Good.",
              "updated_at": "2025-01-01T10:00:00+00:00"}  # fmt: skip
    fake.on("reviews", "GET", "/customers/ada/reviews", 200, page_of(review))
    fake.on("inventory", "GET", "/products", 200, page_of(PRODUCT))
    page = client.get("/reviews").text
    assert ">Trail Shoes</a>" in page and "product 7" not in page


def test_the_order_page_shows_the_address_paid_and_the_trace_link(
    client: FlaskClient, fake: FakeServices, shopper: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("sales", "GET", f"/sales/{SALE_ID}", 200, SALE)
    fake.on("customers", "GET", "/customers/ada", 200, {"username": "ada", "address": "1 Elm Row"})
    page = client.get(f"/orders/{SALE_ID}").text
    assert '<span id="delivery-address">1 Elm Row</span>' in page
    assert 'id="order-status"><span class="status status-completed">paid</span>' in page
    assert 'id="order-trace"' not in page  # tracing is off
    monkeypatch.setenv("JAEGER_UI_URL", "http://jaeger.example:16686/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger.example:4318")
    page = client.get(f"/orders/{SALE_ID}").text
    link = re.search(r'href="([^"]+)" id="order-trace"', page)
    assert link is not None
    assert link.group(1).startswith("http://jaeger.example:16686/search?service=sales&amp;tags=")
    assert SALE_ID in link.group(1)


def test_cancel_sends_a_key_and_shows_a_refusal(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("sales", "POST", f"/sales/{SALE_ID}/cancellation", 409,
            {"code": "invalid_transition", "detail": "A shipped order cannot be cancelled.", "status": "shipped"})  # fmt: skip
    fake.on("sales", "GET", f"/sales/{SALE_ID}", 200, {**SALE, "status": "shipped"})
    response = client.post(
        f"/orders/{SALE_ID}/cancel", data={"key": "c-1", "confirm": "yes"}, follow_redirects=True
    )
    assert "A shipped order cannot be cancelled." in response.text
    assert 'id="cancel-order"' not in response.text
    assert fake.made("sales", "POST", f"/sales/{SALE_ID}/cancellation")[0].idempotency_key == "c-1"


@pytest.mark.parametrize(
    ("body", "category", "hint"),
    [
        ({"code": "sale_pending", "sale_status": "cancelling", "reason": "dependency_unavailable",
          "detail": "The customers service is unavailable; the order is cancelling."},
         "warning", "The cancellation is recorded: the order stays cancelling"),
        ({"code": "dependency_unavailable", "detail": "The inventory service is unavailable."},
         "error", "Nothing was cancelled (the order is as it was)"),
        ({"code": "database_unavailable", "detail": "The database is unavailable."},
         "error", "Nothing was cancelled (the order is as it was)"),
        ({"code": "auth_unavailable", "detail": "Signing keys are unavailable."},
         "error", "Nothing was cancelled (the order is as it was)"),
    ],
)  # fmt: skip
def test_a_503_cancellation_says_whether_it_was_recorded(
    client: FlaskClient, fake: FakeServices, shopper: str, body: dict, category: str, hint: str
) -> None:
    fake.on("sales", "POST", f"/sales/{SALE_ID}/cancellation", 503, {**body, "sale_id": SALE_ID})
    status = "cancelling" if body["code"] == "sale_pending" else "completed"
    fake.on("sales", "GET", f"/sales/{SALE_ID}", 200, {**SALE, "status": status})
    page = client.post(
        f"/orders/{SALE_ID}/cancel", data={"key": "c-2", "confirm": "yes"}, follow_redirects=True
    )
    category_found, flashed = re.findall(r'<p class="flash (\w+)" role="status">([^<]*)</p>',
                                         page.text)[-1]  # fmt: skip
    assert category_found == category
    assert body["detail"] in flashed and hint in flashed
    assert ('id="cancel-order"' in page.text) == (status == "completed")
    assert ("being cancelled" in page.text) == (status == "cancelling")


def test_the_console_words_a_503_cancellation_the_same_way(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    fake.on("sales", "POST", f"/sales/{SALE_ID}/cancellation", 503, {
        "code": "sale_pending", "sale_status": "cancelling", "sale_id": SALE_ID,
        "detail": "The inventory service is unavailable."})  # fmt: skip
    fake.on("sales", "GET", f"/sales/{SALE_ID}", 200, {**SALE, "status": "cancelling"})
    page = client.post(f"/admin/orders/{SALE_ID}/cancel", data={"key": "c-3"},
                       follow_redirects=True)  # fmt: skip
    assert "The cancellation is recorded" in page.text and "flash warning" in page.text


def test_a_503_read_is_a_503_page_with_the_detail_and_what_to_do(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("sales", "GET", "/cart", 503, {
        "code": "database_unavailable", "detail": "The sales database is unavailable."})  # fmt: skip
    response = client.get("/cart")
    assert response.status_code == 503
    assert "The sales database is unavailable." in response.text
    assert "Nothing was changed: please try again in a moment." in response.text


def test_a_503_top_up_says_nothing_was_charged(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("customers", "POST", "/customers/ada/wallet/charge", 503, {
        "code": "database_unavailable", "detail": "The database is unavailable."})  # fmt: skip
    fake.on("customers", "GET", "/customers/ada/wallet", 200,
            {"balance": "0.00", **page_of()})  # fmt: skip
    response = client.post("/wallet", data={"amount": "5", "key": "t-2"})
    assert response.status_code == 503
    assert "The database is unavailable. Nothing was changed" in response.text


def test_top_up_charges_the_wallet_once_per_form(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("customers", "POST", "/customers/ada/wallet/charge", 200, {"balance": "25.50"})
    response = client.post("/wallet", data={"amount": "25.5", "key": "t-1"})
    assert response.status_code == 302
    (charge,) = fake.made("customers", "POST", "/customers/ada/wallet/charge")
    assert charge.json == {"amount": "25.50"} and charge.idempotency_key == "t-1"


WALLET = {"username": "ada", "balance": "1234.50", "items": [
    {"kind": "charge", "amount": "1000.00", "created_at": "2025-01-01T10:00:00+00:00"},
    {"kind": "refund_credit", "amount": "5.00", "sale_id": SALE_ID,
     "created_at": "2025-01-01T11:00:00+00:00"}], "page": 1, "page_size": 20, "total": 2}  # fmt: skip


@pytest.mark.parametrize("typed", ["1e3", "-5", "0", "100000.01", "12.345", "ten"])
def test_a_top_up_takes_only_a_plain_amount_within_the_stated_limit(
    client: FlaskClient, fake: FakeServices, shopper: str, typed: str
) -> None:
    fake.on("customers", "GET", "/customers/ada/wallet", 200, WALLET)
    page = client.get("/wallet").text
    assert "From $0.01 to $100,000.00 per top-up." in page
    response = client.post("/wallet", data={"amount": typed, "key": "t-2"})
    assert response.status_code == 422
    assert "Enter an amount like 25 or 25.50." in response.text or (
        "Top up from 0.01 to 100,000.00 at a time." in response.text
    )
    assert f'value="{typed}"' in response.text  # what was typed stays
    assert not fake.made("customers", "POST", "/customers/ada/wallet/charge")


def test_money_shows_the_currency_and_a_top_up_reads_top_up(
    make_app, fake: FakeServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("customers", "GET", "/customers/ada/wallet", 200, WALLET)
    client = make_app().test_client()
    log_in(client, fake, "ada")
    page = client.get("/wallet").text
    assert '<strong id="balance">$1,234.50</strong>' in page
    assert ">top-up</td>" in page and ">refund</td>" in page and ">charge" not in page
    monkeypatch.setenv("SHOP_CURRENCY", "EUR")
    monkeypatch.setenv("SHOP_LOCALE", "de_DE")
    client = make_app().test_client()
    log_in(client, fake, "ada")
    assert '<strong id="balance">1.234,50\xa0€</strong>' in client.get("/wallet").text
    monkeypatch.setenv("SHOP_CURRENCY", "XYZ")
    with pytest.raises(ValueError, match="SHOP_CURRENCY"):
        make_app()


def test_a_page_past_the_end_goes_to_the_last_and_the_count_always_shows(
    client: FlaskClient, fake: FakeServices
) -> None:
    fake.on("inventory", "GET", "/products", 200,
            {"items": [], "page": 999, "page_size": 12, "total": 30})  # fmt: skip
    response = client.get("/?q=lamp&page=999")
    assert response.status_code == 302
    assert response.headers["Location"] == "/?q=lamp&page=3"
    fake.on("inventory", "GET", "/products", 200,
            {"items": [PRODUCT], "page": 1, "page_size": 12, "total": 1})  # fmt: skip
    assert '<p class="result-count" id="result-count">1 product</p>' in client.get("/").text


def test_the_menu_counts_the_cart_and_a_short_line_says_how_many_are_left(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    short = {**CART, "items": [{**CART["items"][0], "quantity": 5, "available": False}]}
    fake.on("sales", "GET", "/cart", 200, short)
    fake.on("inventory", "GET", "/products", 200, page_of(PRODUCT))
    page = client.get("/cart").text
    assert '<span class="count" id="cart-count" aria-label="5 items">5</span>' in page
    assert "only 4 available" in page


def test_a_service_that_is_down_is_a_clear_503_page(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.down.add("sales")
    response = client.get("/cart")
    assert response.status_code == 503
    assert "The sales service is unavailable" in response.text
    assert "Traceback" not in response.text


def test_a_service_error_is_a_502_page_without_details(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on(
        "sales",
        "GET",
        "/cart",
        500,
        {"code": "internal_error", "detail": "psycopg2 said something"},
    )
    response = client.get("/cart")
    assert response.status_code == 502
    assert "The sales service failed." in response.text and "psycopg2" not in response.text


def test_the_review_form_is_only_for_buyers(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("inventory", "GET", "/products/7", 200, PRODUCT)
    fake.on("reviews", "GET", "/products/7/reviews", 200,
            {**page_of(), "summary": {"count": 0, "average": None, "histogram": {}}})  # fmt: skip
    fake.on("reviews", "GET", "/customers/ada/reviews", 200, page_of())
    fake.on("sales", "GET", "/customers/ada/sales", 200, page_of({**SALE, "status": "cancelled"}))
    page = client.get("/products/7").text
    assert 'id="review-form"' not in page and "Only buyers can review" in page
    (asked,) = fake.made("sales", "GET", "/customers/ada/sales")
    assert asked.params["product"] == 7
    fake.on("sales", "GET", "/customers/ada/sales", 200, page_of(SALE))
    assert 'id="review-form"' in client.get("/products/7").text


def test_review_is_written_then_edited(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("reviews", "GET", "/customers/ada/reviews", 200, page_of())
    fake.on(
        "reviews",
        "POST",
        "/reviews",
        403,
        {"code": "not_a_buyer", "detail": "Only buyers may review."},
    )
    fake.on("inventory", "GET", "/products/7", 200, PRODUCT)
    fake.on("reviews", "GET", "/products/7/reviews", 200,
            {**page_of(), "summary": {"count": 0, "average": None, "histogram": {}}})  # fmt: skip
    fake.on("sales", "GET", "/customers/ada/sales", 200, page_of({**SALE, "status": "delivered"}))
    response = client.post(
        "/products/7/review", data={"rating": "4", "comment": "Nice"}, follow_redirects=False
    )
    # Refused: the page says why and keeps what was written.
    assert response.status_code == 422
    assert "Only buyers may review." in response.text
    assert re.search(r">\s*Nice</textarea>", response.text)
    assert '<option selected value="4">' in response.text
    assert fake.made("reviews", "POST", "/reviews")[0].json == {
        "product_id": 7,
        "rating": 4,
        "comment": "Nice",
    }
    fake.on(
        "reviews",
        "GET",
        "/customers/ada/reviews",
        200,
        page_of({"id": 3, "product_id": 7, "rating": 4}),
    )
    fake.on("reviews", "PATCH", "/reviews/3", 200, {"id": 3})
    client.post("/products/7/review", data={"rating": "2", "comment": "Worse"})
    assert fake.made("reviews", "PATCH", "/reviews/3")[0].json == {"rating": 2, "comment": "Worse"}


# --- the console ---------------------------------------------------------------------------------


def test_moderation_sends_the_action_and_note(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    fake.on("reviews", "GET", "/reviews", 200, page_of({"id": 3, "product_id": 7, "rating": 4,
            "username": "ada", "comment": "Comfy", "status": "pending"}))  # fmt: skip
    page = client.get("/admin/moderation")
    assert page.status_code == 200 and "Comfy" in page.text
    fake.on("reviews", "POST", "/reviews/3/moderation", 200, {"id": 3, "status": "approved"})
    client.post("/admin/reviews/3/moderation", data={"action": "approve", "note": "fine"})
    (call,) = fake.made("reviews", "POST", "/reviews/3/moderation")
    assert call.json == {"action": "approve", "note": "fine"} and call.token == admin


def test_console_order_shows_the_saga_timeline_and_ships(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    fake.on("sales", "GET", f"/sales/{SALE_ID}", 200, SALE)
    page = client.get(f"/admin/orders/{SALE_ID}")
    assert 'id="saga-steps"' in page.text and "reserve" in page.text
    fake.on("sales", "POST", f"/sales/{SALE_ID}/shipment", 200, {**SALE, "status": "shipped"})
    client.post(f"/admin/orders/{SALE_ID}/ship", data={"carrier": "DHL", "tracking_number": ""})
    assert fake.made("sales", "POST", f"/sales/{SALE_ID}/shipment")[0].json == {"carrier": "DHL"}


def test_restock_is_never_retried(client: FlaskClient, fake: FakeServices, admin: str) -> None:
    fake.on("inventory", "POST", "/products/7/restock", 200, PRODUCT)
    client.post("/admin/products/7/restock", data={"quantity": "5"})
    (call,) = fake.made("inventory", "POST", "/products/7/restock")
    assert call.json == {"quantity": 5} and call.idempotency_key is None


METRICS = """# HELP shop_sales_total Sales by outcome.
# TYPE shop_sales_total counter
shop_sales_total{status="completed",failure_code=""} %d
shop_sales_total{status="failed",failure_code="insufficient_funds"} 3
# HELP shop_sales_pending Pending sales.
# TYPE shop_sales_pending gauge
shop_sales_pending{status="pending"} 2
"""


def test_system_page_reads_readiness_metrics_and_degrades(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    fake.texts[("sales", "/metrics")] = (200, METRICS % 10)
    fake.on(
        "reviews",
        "GET",
        "/readyz",
        503,
        {"code": "not_ready", "detail": "The database is not reachable."},
    )
    fake.down.add("inventory")
    first = client.get("/admin/system")
    assert first.status_code == 200
    assert "The database is not reachable." in first.text
    assert re.search(
        r'data-service="inventory">\s*<td>inventory</td>\s*<td><span[^>]*>unreachable', first.text
    )
    assert re.search(r'id="pending">2 ', first.text)
    assert "no fault switches on this service yet" in first.text  # /admin/faults is 404 here
    time.sleep(0.6)
    fake.texts[("sales", "/metrics")] = (200, METRICS % 16)
    second = client.get("/admin/system", headers={"HX-Request": "true"})
    assert "<html" not in second.text  # htmx gets the fragment only
    rate = re.search(r"completed (\d+\.\d+)", second.text)
    assert rate and 4 < float(rate.group(1)) < 11  # 6 more in 0.6-1.5 s


def test_system_page_without_business_metrics_uses_the_sales_api(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    fake.texts[("sales", "/metrics")] = (200, "# TYPE flask_http_request_total counter\n"
        'flask_http_request_total{method="POST",status="201",endpoint="sales.create_sale"} 4\n')  # fmt: skip
    fake.on("sales", "GET", "/sales", 200, {**page_of(), "total": 5})
    page = client.get("/admin/system")
    assert re.search(r'id="pending">5 ', page.text)
    assert "does not export shop_* business metrics yet" in page.text
    assert fake.made("sales", "GET", "/sales")[0].params["status"] == "pending"


def test_health_ready_and_metrics(client: FlaskClient, fake: FakeServices) -> None:
    assert client.get("/healthz").json == {"status": "ok", "service": "storefront"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["services"]["sales"] == "ready"
    assert client.get("/", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    assert "flask_http_request_total" in client.get("/metrics").text
    fake.down.add("customers")
    assert client.get("/readyz").status_code == 503


def test_request_id_is_passed_to_the_services(client: FlaskClient, fake: FakeServices) -> None:
    seen: list[str | None] = []

    def products(call):  # the transport reads the id from the context, as ServiceClient does
        from shopkit.request_id import current_request_id

        seen.append(current_request_id())
        from shopkit.service_client import ServiceResponse

        return ServiceResponse(200, page_of())

    fake.handle("inventory", "GET", "/products", products)
    client.get("/", headers={"X-Request-ID": "req-42"})
    assert seen == ["req-42"]


# --- the data page's runs ------------------------------------------------------------------------


def test_job_runner_runs_one_at_a_time_and_reads_progress(tmp_path: Path) -> None:
    fake_python = tmp_path / "python"
    fake_python.write_text(
        textwrap.dedent(f"""\
        #!{sys.executable}
        import sys, time
        print("args", *sys.argv[1:], flush=True)
        for n in (2, 5):
            print(f"replay: {{n}} attempts, {{n}} completed (0 cancelled), 0 failed", flush=True)
            time.sleep(0.3)
        """)
    )
    fake_python.chmod(0o755)
    runner = JobRunner(
        Settings.from_env("storefront", log_level="WARNING"), python=str(fake_python)
    )
    job = runner.start("replay", ["--purchases", "5"], target=5)
    try:
        runner.start("populate", [])
    except Exception as exc:
        assert type(exc).__name__ == "JobBusy"
    else:
        raise AssertionError("a second run started while the first was going")
    deadline = time.monotonic() + 10
    while job.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.exit_code == 0
    assert job.lines[0] == "args -m seeder replay --purchases 5"
    assert job.progress() == (5, 5)
    assert runner.start("populate", ["--customers", "1"]) is runner.current


def test_a_static_file_never_replaces_the_session_cookie(
    client: FlaskClient, fake: FakeServices, app
) -> None:
    """A page's styles load beside it, with the same cookie: their answers must not set
    one (a logged-out session's cookie is replaced by the page's own answer, whose form
    carries a CSRF token of the new session)."""
    log_in(client, fake, "ada")
    fake.on("customers", "POST", "/auth/logout", 204)
    copied = client.get_cookie("shop_session").value
    assert client.post("/logout").status_code == 302
    stale = app.test_client()
    stale.set_cookie("shop_session", copied)  # a request sent before the logout's answer
    styles = stale.get("/static/shop.css")
    assert styles.status_code == 200
    assert "Set-Cookie" not in styles.headers
    page = stale.get("/login")  # the page itself does open a fresh session
    assert page.status_code == 200 and "shop_session=" in page.headers.get("Set-Cookie", "")
