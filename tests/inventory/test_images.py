"""Product images: upload (admin), type by content, size limit, ETag and 304, archived products."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from inventory_service.models import IMAGE_MAX_BYTES

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)
JPEG = b"\xff\xd8\xff\xe0" + bytes(64) + b"\xff\xd9"
WEBP = b"RIFF" + (76).to_bytes(4, "little") + b"WEBPVP8 " + bytes(64)
SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10">'
    b'<rect width="10" height="10" fill="#c33"/></svg>'
)


def put_image(
    inventory: FlaskClient, product_id: int, body: bytes, headers: dict[str, str],
    content_type: str = "image/png",
) -> Any:  # fmt: skip
    """``PUT /products/{id}/image`` with ``body`` as the raw request body."""
    return inventory.put(
        f"/products/{product_id}/image",
        data=body,
        headers={**headers, "Content-Type": content_type},
    )


@pytest.mark.parametrize(
    ("body", "media_type"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp"), (SVG, "image/svg+xml")],
)
def test_an_admin_uploads_an_image_and_anyone_reads_it_with_its_type_and_etag(
    inventory: FlaskClient, admin: dict[str, str], make_product: Callable[..., dict[str, Any]],
    body: bytes, media_type: str,
) -> None:  # fmt: skip
    product = make_product()
    # The type comes from the bytes: a wrong Content-Type changes nothing.
    stored = put_image(inventory, product["id"], body, admin, "application/octet-stream")
    assert stored.status_code == 200, stored.get_json()
    etag = f'"{hashlib.sha256(body).hexdigest()}"'
    assert stored.get_json()["media_type"] == media_type
    assert stored.get_json()["size"] == len(body)
    assert stored.get_json()["etag"] == etag

    served = inventory.get(f"/products/{product['id']}/image")
    assert served.status_code == 200
    assert served.get_data() == body
    assert served.mimetype == media_type
    assert served.headers["ETag"] == etag
    assert served.headers["Cache-Control"] == "public, no-cache"  # revalidated: see the 304
    policy = served.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "sandbox" in policy
    assert served.headers["X-Content-Type-Options"] == "nosniff"


def test_a_new_upload_replaces_the_image_and_its_etag(
    inventory: FlaskClient, admin: dict[str, str], make_product: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    product = make_product()
    first = put_image(inventory, product["id"], PNG, admin).get_json()["etag"]
    second = put_image(inventory, product["id"], SVG, admin).get_json()["etag"]
    assert first != second
    served = inventory.get(f"/products/{product['id']}/image")
    assert served.get_data() == SVG and served.headers["ETag"] == second


def test_if_none_match_with_the_current_etag_is_304_and_an_old_one_200(
    inventory: FlaskClient, admin: dict[str, str], make_product: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    product = make_product()
    etag = put_image(inventory, product["id"], PNG, admin).get_json()["etag"]
    path = f"/products/{product['id']}/image"
    unchanged = inventory.get(path, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.get_data() == b""
    assert unchanged.headers["ETag"] == etag
    changed = inventory.get(path, headers={"If-None-Match": '"an-older-one"'})
    assert changed.status_code == 200 and changed.get_data() == PNG


@pytest.mark.parametrize(
    "body",
    [
        b"GIF89a" + bytes(32),  # a real image type, but not one of the four
        b"%PDF-1.7\n" + bytes(32),
        b"just some text",
        b"",
        b'<html xmlns="http://www.w3.org/1999/xhtml"><body/></html>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
        b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:x="http://www.w3.org/1999/xlink">'
        b'<a x:href="javascript:alert(1)"><text>hi</text></a></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><image href="https://tracker.example/p.png"/>'
        b"</svg>",
        b'<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><div/></foreignObject></svg>',
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaa">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg"><text>&a;</text></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"',  # not well-formed
    ],
)
def test_anything_but_a_png_jpeg_webp_or_safe_svg_is_415_and_stores_nothing(
    inventory: FlaskClient, admin: dict[str, str], make_product: Callable[..., dict[str, Any]],
    count_rows: Callable[[str], int], body: bytes,
) -> None:  # fmt: skip
    product = make_product()
    refused = put_image(inventory, product["id"], body, admin, "image/svg+xml")
    assert refused.status_code == 415, refused.get_data()
    assert refused.mimetype == "application/problem+json"
    assert refused.get_json()["code"] == "unsupported_image"
    assert count_rows("product_images") == 0


def test_an_image_over_1_mib_is_413_and_stores_nothing(
    inventory: FlaskClient, admin: dict[str, str], make_product: Callable[..., dict[str, Any]],
    count_rows: Callable[[str], int],
) -> None:  # fmt: skip
    product = make_product()
    exactly = PNG + bytes(IMAGE_MAX_BYTES - len(PNG))
    assert put_image(inventory, product["id"], exactly, admin).status_code == 200
    too_big = put_image(inventory, product["id"], exactly + b"\x00", admin)
    assert too_big.status_code == 413
    assert too_big.mimetype == "application/problem+json"
    assert too_big.get_json()["code"] == "image_too_large"
    assert inventory.get(f"/products/{product['id']}/image").get_data() == exactly
    assert count_rows("product_images") == 1


def test_only_admins_upload(
    inventory: FlaskClient, customer: dict[str, str], service: dict[str, str],
    make_product: Callable[..., dict[str, Any]], count_rows: Callable[[str], int],
) -> None:  # fmt: skip
    product = make_product()
    assert put_image(inventory, product["id"], PNG, {}).status_code == 401
    for who in (customer, service):
        refused = put_image(inventory, product["id"], PNG, who)
        assert refused.status_code == 403
        assert refused.get_json()["code"] == "forbidden"
    assert count_rows("product_images") == 0


def test_no_image_and_no_product_are_404_problems(
    inventory: FlaskClient, admin: dict[str, str], make_product: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    product = make_product()
    for path in (f"/products/{product['id']}/image", "/products/987654/image"):
        missing = inventory.get(path)
        assert missing.status_code == 404, path
        assert missing.mimetype == "application/problem+json"
        assert missing.get_json()["code"] == "not_found"
    unknown = put_image(inventory, 987654, PNG, admin)
    assert unknown.status_code == 404 and unknown.get_json()["code"] == "not_found"


def test_an_archived_products_image_is_hidden_but_for_admins_who_may_still_upload(
    inventory: FlaskClient, admin: dict[str, str], customer: dict[str, str],
    make_product: Callable[..., dict[str, Any]],
) -> None:  # fmt: skip
    product = make_product()
    assert inventory.delete(f"/products/{product['id']}", headers=admin).status_code == 204
    assert put_image(inventory, product["id"], PNG, admin).status_code == 200
    path = f"/products/{product['id']}/image"
    for who in ({}, customer):
        hidden = inventory.get(path, headers=who)
        assert hidden.status_code == 404
        assert hidden.get_json()["code"] == "not_found"
    seen = inventory.get(path, headers=admin)
    assert seen.status_code == 200 and seen.get_data() == PNG
    assert seen.headers["Cache-Control"] == "private, no-cache"
