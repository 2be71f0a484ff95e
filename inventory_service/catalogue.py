"""Catalogue operations: create (one or a batch), look up, search, change and archive products."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, func, insert, select
from sqlalchemy.orm import Session, aliased

from inventory_service.models import MAX_ID, Product
from shopkit.errors import NotFound
from shopkit.pagination import paginate

PATCH_FIELDS = ("name", "category", "price", "description", "archived")
PRODUCT_COLUMNS = (
    "id", "name", "category", "price", "description", "stock", "archived",
    "created_at", "updated_at",
)  # fmt: skip

#: ``sort`` -> (attribute, direction) pairs; the id breaks ties so pages are stable.
_SORTS = {
    "newest": (("created_at", "desc"), ("id", "desc")),
    "price": (("price", "asc"), ("id", "asc")),
    "-price": (("price", "desc"), ("id", "desc")),
    "name": (("name", "asc"), ("id", "asc")),
    "-name": (("name", "desc"), ("id", "desc")),
}


def _ordering(entity: Any, sort: str) -> list[Any]:
    return [getattr(getattr(entity, name), direction)() for name, direction in _SORTS[sort]]


def text_match(query: str) -> ColumnElement[bool]:
    """SQL condition: every word of ``query`` begins a word of the name or description.

    Case-insensitive and in any order; answered by the ``ix_products_search_vector``
    GIN index. Any input is safe: punctuation is ignored, and a query without
    any word matches nothing.
    """
    return Product.search_vector.op("@@", is_comparison=True)(func.inventory.search_query(query))


def search_statement(args: dict[str, Any]) -> Select[tuple[Product]]:
    """The ordered query for ``GET /products`` with its filters (archived never listed)."""
    statement = select(Product).where(Product.archived.is_(False))
    if args.get("category") is not None:
        statement = statement.where(Product.category == args["category"])
    if args.get("min_price") is not None:
        statement = statement.where(Product.price >= args["min_price"])
    if args.get("max_price") is not None:
        statement = statement.where(Product.price <= args["max_price"])
    if args.get("in_stock") is not None:
        statement = statement.where(Product.stock > 0 if args["in_stock"] else Product.stock == 0)
    sort = args.get("sort") or "newest"
    if not args.get("q"):
        return statement.order_by(*_ordering(Product, sort))
    # With a text query, find the matches first (GIN index), then sort them.
    # ``OFFSET 0`` keeps PostgreSQL from instead walking a sorted index and
    # testing each row until a page is full: with a rare or absent word that
    # walk reads the whole table (measured: 175 ms instead of 0.04 ms at 200,000
    # products, and it grows with the catalogue).
    fenced = statement.where(text_match(args["q"])).offset(0).subquery("matches")
    matches = aliased(Product, fenced)
    return select(matches).order_by(*_ordering(matches, sort))


def search(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """A page of listed products matching the filters, with the total count."""
    return paginate(session, search_statement(args), args["page"], args["page_size"])


def get_product(
    session: Session, product_id: int, *, include_archived: bool = False, for_update: bool = False
) -> Product:
    """The product ``product_id``, or 404 (also for archived ones unless ``include_archived``)."""
    product = None
    if 0 < product_id <= MAX_ID:
        statement = select(Product).where(Product.id == product_id)
        if for_update:
            statement = statement.with_for_update()
        product = session.execute(statement).scalar_one_or_none()
    if product is None or (product.archived and not include_archived):
        raise NotFound(f"No product with id {product_id}.")
    return product


def create(session: Session, data: dict[str, Any]) -> Product:
    """Add a product to the catalogue."""
    product = Product(**data)
    session.add(product)
    session.flush()
    return product


def create_batch(session: Session, items: list[dict[str, Any]]) -> Sequence[Row[Any]]:
    """Add many products with one multi-row ``INSERT ... RETURNING`` (all or none).

    Returns the created rows (product columns, as attributes) in the order given.
    """
    table = Product.__table__
    columns = [table.c[name] for name in PRODUCT_COLUMNS]
    statement = insert(table).returning(*columns, sort_by_parameter_order=True)
    return session.execute(statement, items).all()


def update(session: Session, product_id: int, changes: dict[str, Any]) -> Product:
    """Change product fields (an admin may also restore an archived product)."""
    product = get_product(session, product_id, include_archived=True, for_update=True)
    for name, value in changes.items():
        if name in PATCH_FIELDS:
            setattr(product, name, value)
    session.flush()
    return product


def archive(session: Session, product_id: int) -> None:
    """Archive a product: it is no longer listed or reservable; its history stays. Idempotent."""
    product = get_product(session, product_id, include_archived=True, for_update=True)
    if not product.archived:
        product.archived = True
        session.flush()
