"""The console's product page, deactivation step, order address, moderation names and images,
on the fake services."""

from __future__ import annotations

import io
import re

import pytest
from flask.testing import FlaskClient

from storefront.clients import BinaryResponse
from tests.support.storefront import Call, FakeServices
from tests.support.storefront_answers import PRODUCT, SALE, SALE_ID, page_of

PNG = b"\x89PNG\r\n\x1a\n" + bytes(32)
ETAG = '"5f1e"'


# --- the product page ------------------------------------------------------------------------


def test_the_product_page_fills_the_form_from_the_apis_money_string(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    fake.on("inventory", "GET", "/products/7", 200, PRODUCT)  # price "89.90": a string
    page = client.get("/admin/products/7")
    assert page.status_code == 200, page.text
    assert re.search(r'<input[^>]*id="price"[^>]*value="89.90"', page.text), page.text
    assert 'value="Trail Shoes"' in page.text and "Light and grippy." in page.text
    for form in ("restock", "archive", "image"):
        assert f'action="/admin/products/7/{form}"' in page.text
    fake.on("inventory", "GET", "/products/7", 200, {**PRODUCT, "archived": True})
    assert 'action="/admin/products/7/restore"' in client.get("/admin/products/7").text


def test_a_saved_price_is_sent_as_a_money_string(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    fake.on("inventory", "GET", "/products/7", 200, PRODUCT)
    fake.on("inventory", "PATCH", "/products/7", 200, {**PRODUCT, "price": "79.50"})
    fields = {"name": "Trail Shoes", "category": "clothes", "price": "79.5", "description": ""}
    saved = client.post("/admin/products/7", data=fields)
    assert saved.status_code == 302
    (call,) = fake.made("inventory", "PATCH", "/products/7")
    assert call.json["price"] == "79.50" and call.token == admin


def test_an_unreadable_price_leaves_the_field_empty_instead_of_failing(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    fake.on("inventory", "GET", "/products/7", 200, {**PRODUCT, "price": None})
    page = client.get("/admin/products/7")
    assert page.status_code == 200
    assert re.search(r'<input[^>]*id="price"[^>]*value=""', page.text), page.text


# --- deactivating a customer -----------------------------------------------------------------


def test_deactivating_asks_first_and_acts_only_on_the_confirmation(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    fake.on("customers", "DELETE", "/customers/ada", 204, {})
    fake.on("customers", "GET", "/customers", 200, page_of())
    asked = client.get("/admin/customers/ada/deactivate")
    assert asked.status_code == 200
    assert "Deactivate ada?" in asked.text and 'id="confirm-deactivation"' in asked.text
    assert 'name="confirm"' in asked.text and 'id="keep-active"' in asked.text
    # A POST without the confirmation (an old page's button) only asks again.
    unconfirmed = client.post("/admin/customers/ada/deactivate")
    assert unconfirmed.status_code == 200 and "Deactivate ada?" in unconfirmed.text
    assert not fake.made("customers", "DELETE", "/customers/ada")
    done = client.post("/admin/customers/ada/deactivate", data={"confirm": "yes"},
                       follow_redirects=True)  # fmt: skip
    (call,) = fake.made("customers", "DELETE", "/customers/ada")
    assert call.token == admin
    assert "ada is deactivated." in done.text


# --- the order page --------------------------------------------------------------------------


def test_the_order_page_shows_the_buyers_delivery_address(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    fake.on("sales", "GET", f"/sales/{SALE_ID}", 200, SALE)
    fake.on("customers", "GET", "/customers/ada", 200,
            {"username": "ada", "address": "12 Analytical Row, London"})  # fmt: skip
    page = client.get(f"/admin/orders/{SALE_ID}")
    assert page.status_code == 200
    address = re.search(r'id="delivery-address">(.*?)</span></p>', page.text, re.S)
    assert address and address.group(1) == "12 Analytical Row, London"
    assert fake.made("customers", "GET", "/customers/ada")[0].token == admin


def test_the_order_page_links_to_the_orders_traces_while_tracing_is_on(
    client: FlaskClient, fake: FakeServices, admin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("sales", "GET", f"/sales/{SALE_ID}", 200, SALE)
    fake.on("customers", "GET", "/customers/ada", 200, {"username": "ada", "address": "1 Elm"})
    monkeypatch.setenv("JAEGER_UI_URL", "http://jaeger.example:16686")
    assert 'id="order-trace"' not in client.get(f"/admin/orders/{SALE_ID}").text  # tracing off
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger.example:4318")
    page = client.get(f"/admin/orders/{SALE_ID}").text
    link = re.search(r'href="([^"]+)" id="order-trace"', page)
    assert link and link.group(1).startswith("http://jaeger.example:16686/search?service=sales")
    assert SALE_ID in link.group(1)


def test_an_address_the_order_holds_wins_and_an_unreadable_one_is_said(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    fake.on("sales", "GET", f"/sales/{SALE_ID}", 200, {**SALE, "address": "1 Order Street"})
    assert "1 Order Street" in client.get(f"/admin/orders/{SALE_ID}").text
    assert not fake.made("customers", "GET", "/customers/ada")
    fake.on("sales", "GET", f"/sales/{SALE_ID}", 200, SALE)
    fake.down.add("customers")
    page = client.get(f"/admin/orders/{SALE_ID}")
    assert page.status_code == 200 and "the address cannot be read right now" in page.text


# --- moderation ------------------------------------------------------------------------------


def test_moderation_names_the_products(client: FlaskClient, fake: FakeServices, admin: str) -> None:
    review = {"id": 3, "rating": 4, "username": "ada", "comment": "Comfy", "status": "pending"}
    fake.on("reviews", "GET", "/reviews", 200,
            page_of({**review, "product_id": 7}, {**review, "id": 4, "product_id": 81}))  # fmt: skip
    fake.on("inventory", "GET", "/products", 200, page_of(PRODUCT))  # 81 is archived: absent
    page = client.get("/admin/moderation")
    names = re.findall(r'class="product-name"[^>]*>([^<]*)</a>', page.text)
    assert names == ["Trail Shoes", "product 81"]
    (call,) = fake.made("inventory", "GET", "/products")
    assert call.params["ids"] == "7,81"


# --- images ----------------------------------------------------------------------------------


def test_the_image_is_passed_on_with_its_etag_and_a_revalidation_is_304(
    client: FlaskClient, fake: FakeServices
) -> None:
    headers = {"Content-Type": "image/png", "ETag": ETAG, "Cache-Control": "public, no-cache",
               "Content-Security-Policy": "default-src 'none'; sandbox"}  # fmt: skip

    def answer(call: Call) -> BinaryResponse:
        if (call.headers or {}).get("If-None-Match") == ETAG:
            return BinaryResponse(304, headers, b"")
        return BinaryResponse(200, headers, PNG)

    fake.binaries[("inventory", "GET", "/products/7/image")] = answer
    image = client.get("/products/7/image")
    assert image.status_code == 200 and image.data == PNG
    assert image.mimetype == "image/png" and image.headers["ETag"] == ETAG
    assert image.headers["Cache-Control"] == "public, no-cache"
    assert "sandbox" in image.headers["Content-Security-Policy"]
    again = client.get("/products/7/image", headers={"If-None-Match": ETAG})
    assert again.status_code == 304 and again.data == b""


def test_a_product_without_an_image_or_an_inventory_down_gets_the_placeholder(
    client: FlaskClient, fake: FakeServices
) -> None:
    missing = client.get("/products/7/image")  # the fake answers 404
    assert missing.status_code == 200 and missing.mimetype == "image/svg+xml"
    assert missing.headers["X-Image-Placeholder"] == "1" and b"No picture yet" in missing.data
    assert missing.headers["Cache-Control"] == "no-cache"  # an upload shows at once
    fake.down.add("inventory")
    down = client.get("/products/7/image")
    assert down.headers["X-Image-Placeholder"] == "1"
    assert down.headers["Cache-Control"] == "no-store"


def test_the_pages_show_the_image_through_the_storefront(
    client: FlaskClient, fake: FakeServices
) -> None:
    fake.on("inventory", "GET", "/products", 200, page_of(PRODUCT))
    fake.on("inventory", "GET", "/products/7", 200, PRODUCT)
    fake.on("reviews", "GET", "/products/7/reviews", 200,
            {**page_of(), "summary": {"count": 0, "average": None, "histogram": {}}})  # fmt: skip
    assert 'src="/products/7/image"' in client.get("/").text
    assert 'id="product-image" src="/products/7/image"' in client.get("/products/7").text
    shop = {"X-Forwarded-Prefix": "/shop"}  # behind the gateway: its own path, prefixed
    assert 'src="/shop/products/7/image"' in client.get("/", headers=shop).text


def test_an_admin_uploads_an_image_as_its_bytes(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    fake.binaries[("inventory", "PUT", "/products/7/image")] = BinaryResponse(
        200, {"Content-Type": "application/json"}, b'{"media_type": "image/png"}'
    )
    fake.on("inventory", "GET", "/products/7", 200, PRODUCT)
    done = client.post(
        "/admin/products/7/image",
        data={"image": (io.BytesIO(PNG), "shoe.png", "image/png")},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert "Image uploaded." in done.text
    (call,) = fake.made("inventory", "PUT", "/products/7/image")
    assert call.body == PNG and call.token == admin
    assert call.headers == {"Content-Type": "image/png"}


def test_the_inventorys_refusal_of_an_image_is_shown(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    fake.binaries[("inventory", "PUT", "/products/7/image")] = BinaryResponse(
        415, {"Content-Type": "application/problem+json"},
        b'{"code": "unsupported_image", "detail": "Send a PNG, JPEG, WebP or SVG image."}',
    )  # fmt: skip
    fake.on("inventory", "GET", "/products/7", 200, PRODUCT)
    refused = client.post(
        "/admin/products/7/image",
        data={"image": (io.BytesIO(b"GIF89a"), "a.gif", "image/gif")},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert "Send a PNG, JPEG, WebP or SVG image." in refused.text
    too_big = client.post(
        "/admin/products/7/image",
        data={"image": (io.BytesIO(PNG + bytes(1024 * 1024)), "big.png", "image/png")},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert "larger than 1 MiB" in too_big.text
    assert len(fake.made("inventory", "PUT", "/products/7/image")) == 1  # not the big one


def test_an_upload_far_past_the_limit_is_refused_before_it_is_read(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    huge = client.post(
        "/admin/products/7/image",
        data={"image": (io.BytesIO(PNG + bytes(3 * 1024 * 1024)), "huge.png", "image/png")},
        content_type="multipart/form-data",
    )
    assert huge.status_code == 413
    assert not fake.made("inventory", "PUT", "/products/7/image")


def test_only_admins_upload_images(client: FlaskClient, fake: FakeServices, shopper: str) -> None:
    refused = client.post(
        "/admin/products/7/image",
        data={"image": (io.BytesIO(PNG), "shoe.png", "image/png")},
        content_type="multipart/form-data",
    )
    assert refused.status_code == 403
    assert not fake.made("inventory", "PUT", "/products/7/image")
