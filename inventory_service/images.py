"""Product images: one per product, its type told by its content, at most 1 MiB.

An upload is the image's bytes as the request body. Its type is read from
the bytes themselves, never from ``Content-Type``: PNG, JPEG and WebP by
their signatures, SVG by parsing it as XML whose root is ``<svg>``. An SVG
is an active document, so one that could run script or fetch anything
(``<script>``, ``<foreignObject>``, ``on*`` handlers, a ``javascript:`` or
external link, a DOCTYPE with its entities) is refused; and every image is
served with ``Content-Security-Policy: default-src 'none'; sandbox`` and
``nosniff`` (see :mod:`inventory_service.routes`), so even a browser that
opens one directly runs nothing.
"""

from __future__ import annotations

import hashlib
import re
from xml.etree import ElementTree

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from inventory_service.catalogue import get_product
from inventory_service.models import IMAGE_MAX_BYTES, ProductImage
from shopkit.db import transaction
from shopkit.errors import NotFound, ProblemError

SVG_NAMESPACE = "http://www.w3.org/2000/svg"
#: Elements that run script or embed other documents.
_ACTIVE_ELEMENTS = {"script", "foreignobject", "iframe", "embed", "object", "handler"}
_LINK_ATTRIBUTES = {"href", "{http://www.w3.org/1999/xlink}href", "src"}
_ACTIVE_TEXT = re.compile(rb"<!(DOCTYPE|ENTITY)|<\?xml-stylesheet", re.IGNORECASE)


def media_type_of(content: bytes) -> str:
    """The image's media type, read from its bytes; 415 ``unsupported_image`` otherwise."""
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    if _is_safe_svg(content):
        return "image/svg+xml"
    raise ProblemError(
        415,
        "unsupported_image",
        "Send a PNG, JPEG, WebP or SVG image (an SVG without scripts or external links).",
    )


def _is_safe_svg(content: bytes) -> bool:
    """Whether ``content`` is an SVG document with nothing active in it."""
    if content.lstrip()[:1] != b"<" or _ACTIVE_TEXT.search(content):
        return False
    try:
        root = ElementTree.fromstring(content)  # noqa: S314 - no DOCTYPE, so no entities
    except ElementTree.ParseError:
        return False
    is_svg = root.tag in (f"{{{SVG_NAMESPACE}}}svg", "svg")
    return is_svg and not any(_is_active(element) for element in root.iter())


def _is_active(element: ElementTree.Element) -> bool:
    """Whether the element could run script or load something from elsewhere."""
    name = element.tag.rsplit("}", 1)[-1].lower()
    if name in _ACTIVE_ELEMENTS:
        return True
    if name == "style" and re.search(r"url\s*\(|@import", element.text or "", re.IGNORECASE):
        return True
    for attribute, value in element.attrib.items():
        if attribute.rsplit("}", 1)[-1].lower().startswith("on"):
            return True
        if attribute in _LINK_ATTRIBUTES and not value.strip().startswith("#"):
            return True  # only links inside the document itself
    return False


def store(session: Session, product_id: int, content: bytes) -> ProductImage:
    """Replace the product's image with ``content`` (archived products too: admins only).

    413 ``image_too_large`` past :data:`IMAGE_MAX_BYTES`, 415 ``unsupported_image``
    for anything but a PNG, JPEG, WebP or safe SVG, 404 for an unknown product.
    """
    if len(content) > IMAGE_MAX_BYTES:
        raise ProblemError(
            413,
            "image_too_large",
            f"The image is {len(content)} bytes; at most {IMAGE_MAX_BYTES} (1 MiB) are accepted.",
        )
    media_type = media_type_of(content)
    with transaction(session):
        return _replace(session, product_id, media_type, content)


def _replace(session: Session, product_id: int, media_type: str, content: bytes) -> ProductImage:
    """The product's image row, replaced (in the caller's transaction)."""
    get_product(session, product_id, include_archived=True, for_update=True)
    values = {
        "product_id": product_id,
        "media_type": media_type,
        "content": content,
        "sha256": hashlib.sha256(content).hexdigest(),
        "size": len(content),
    }
    statement = insert(ProductImage).values(values)
    changed = {name: statement.excluded[name] for name in values if name != "product_id"}
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[ProductImage.product_id],
            set_={**changed, "updated_at": statement.excluded.updated_at},
        )
    )
    session.expire_all()
    return session.execute(
        select(ProductImage).where(ProductImage.product_id == product_id)
    ).scalar_one()


def image_of(
    session: Session, product_id: int, *, include_archived: bool
) -> tuple[ProductImage, bool]:
    """The product's image (its bytes load on first use), and whether the product is archived.

    404 when the product (or its image) is not there.
    """
    archived = get_product(session, product_id, include_archived=include_archived).archived
    image = session.execute(
        select(ProductImage).where(ProductImage.product_id == product_id)
    ).scalar_one_or_none()
    if image is None:
        raise NotFound(f"Product {product_id} has no image.")
    return image, archived
