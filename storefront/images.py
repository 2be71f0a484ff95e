"""Product images, served through the storefront: ``/products/{id}/image``.

The pages link to the storefront's own path, so an image works wherever the
storefront does: alone on :8080, or under the gateway's ``/shop/`` prefix
(deploy/gateway passes ``/shop/...`` to the storefront and ``/products/...``
to inventory; a page under ``/shop/`` cannot tell which host serves the API).
The inventory's answer is passed on with its ``ETag``, ``Cache-Control`` and
sandboxing CSP, and ``If-None-Match`` is passed back, so a browser's revalidation
is a 304 all the way. A product without an image, or an inventory that does not
answer, gets the placeholder picture: an image never breaks a page.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue

from shopkit.service_client import DependencyUnavailable
from storefront.session import api, current_user, token

bp = Blueprint("images", __name__)

PLACEHOLDER = (Path(__file__).parent / "static" / "placeholder.svg").read_bytes()
#: Headers of the inventory's answer that the browser gets as they are.
PASSED_ON = ("ETag", "Cache-Control", "Content-Security-Policy", "Content-Disposition")


@bp.get("/products/<int:product_id>/image")
def product_image(product_id: int) -> ResponseReturnValue:
    """The product's image, or the placeholder when it has none."""
    user = current_user()
    try:
        answer = api().product_image(
            product_id,
            request.headers.get("If-None-Match"),
            # Admins see archived products' images too (the console shows them).
            token() if user is not None and user.is_admin else None,
        )
    except DependencyUnavailable:
        return placeholder("no-store")
    if answer.status not in (200, 304):
        # No image yet: ask again next time, so an upload shows at once.
        return placeholder("no-cache" if answer.status == 404 else "no-store")
    response = Response(
        answer.content if answer.status == 200 else b"",
        status=answer.status,
        mimetype=answer.header("Content-Type") or "application/octet-stream",
    )
    for name in PASSED_ON:
        value = answer.header(name)
        if value:
            response.headers[name] = value
    return response


def placeholder(cache_control: str) -> Response:
    """The picture shown for a product without an image."""
    response = Response(PLACEHOLDER, mimetype="image/svg+xml")
    response.headers["Cache-Control"] = cache_control
    response.headers["X-Image-Placeholder"] = "1"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
