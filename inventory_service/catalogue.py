"""Catalogue operations: create (one or a batch), look up, search, change and archive products.

Creating a product writes ``shop.product.created.v1`` (and its initial stock's
``stock_changed``), archiving it ``shop.product.archived.v1`` and restoring an
archived one ``shop.product.restored.v1``, in the same transaction
(:mod:`inventory_service.events`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Integer,
    Numeric,
    Row,
    Select,
    String,
    any_,
    bindparam,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from inventory_service import events
from inventory_service.models import Product, rating_average
from shopkit.db import transaction
from shopkit.errors import NotFound
from shopkit.fields import MAX_ID
from shopkit.pagination import paginate

PATCH_FIELDS = ("name", "category", "price", "description", "archived")
PRODUCT_COLUMNS = (
    "id", "name", "category", "price", "description", "stock", "archived",
    "created_at", "updated_at", "rating_count", "rating_sum",
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
    if sort == "rating":
        # The order of the ix_products_rating index: highest average first, unrated
        # last, then the product with more reviews, then the id.
        return [
            rating_average(entity).desc().nulls_last(),
            entity.rating_count.desc(),
            entity.id.asc(),
        ]
    return [getattr(getattr(entity, name), direction)() for name, direction in _SORTS[sort]]


def text_match(query: str) -> ColumnElement[bool]:
    """SQL condition: every word of ``query`` begins a word of the name or description.

    Case-insensitive and in any order; answered by the ``ix_products_search_vector``
    GIN index. Any input is safe: punctuation is ignored, and a query without
    any word matches nothing.
    """
    return Product.search_vector.op("@@", is_comparison=True)(func.inventory.search_query(query))


def _conditions(args: dict[str, Any]) -> list[ColumnElement[bool]]:
    """The ``WHERE`` conditions of ``GET /products`` (archived products are never listed)."""
    conditions: list[ColumnElement[bool]] = [Product.archived.is_(False)]
    if args.get("category") is not None:
        conditions.append(Product.category == args["category"])
    if args.get("min_price") is not None:
        conditions.append(Product.price >= args["min_price"])
    if args.get("max_price") is not None:
        conditions.append(Product.price <= args["max_price"])
    if args.get("in_stock") is not None:
        conditions.append(Product.stock > 0 if args["in_stock"] else Product.stock == 0)
    if args.get("ids") is not None:
        conditions.append(Product.id.in_(args["ids"]))
    if args.get("q"):
        conditions.append(text_match(args["q"]))
    return conditions


def search_statement(args: dict[str, Any]) -> Select[Product]:
    """The ordered query of ``GET /products`` without a text query (see :func:`search`)."""
    return (
        select(Product)
        .where(*_conditions(args))
        .order_by(*_ordering(Product, args.get("sort") or "newest"))
    )


@cache
def _text_search_template(sort: str) -> Select[Any]:
    """The text-search statement for ``sort``, built once, with every filter a parameter.

    An absent filter is bound to ``NULL``, and ``NULL IS NULL OR ...`` is folded
    away by the planner (psycopg2 sends the values inline), so each request
    gets the plan of exactly its filters without rebuilding the statement.
    """
    table = Product.__table__
    c = table.c
    category = bindparam("category", type_=String)
    min_price = bindparam("min_price", type_=Numeric(12, 2))
    max_price = bindparam("max_price", type_=Numeric(12, 2))
    in_stock = bindparam("in_stock", type_=Boolean)
    ids = cast(bindparam("ids", type_=ARRAY(BigInteger)), ARRAY(BigInteger))
    conditions = [
        c.archived.is_(False),
        or_(category.is_(None), c.category == category),
        or_(min_price.is_(None), c.price >= min_price),
        or_(max_price.is_(None), c.price <= max_price),
        or_(in_stock.is_(None), (c.stock > 0) == in_stock),
        or_(ids.is_(None), c.id == any_(ids)),
        c.search_vector.op("@@", is_comparison=True)(
            func.inventory.search_query(bindparam("q", type_=String))
        ),
    ]
    columns = [c[name] for name in PRODUCT_COLUMNS]
    matches = select(*columns).where(*conditions).cte("matches").prefix_with("MATERIALIZED")
    total = select(func.count()).select_from(matches).scalar_subquery().label("total")
    page = (
        select(matches)
        .order_by(*_ordering(matches.c, sort))
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
        .subquery("page")
    )
    one_row = select(literal(1).label("one")).subquery("one_row")
    return select(total, page).select_from(one_row.outerjoin(page, true()))


def text_search_statement(args: dict[str, Any]) -> Select[Any]:
    """One statement for a page of a text search *and* its total, values bound.

    ``WITH matches AS MATERIALIZED (...)`` evaluates the filters once (the GIN
    index or the category index finds the candidates); the count and the
    sorted page both read that set. Compared with a count query plus a page
    query this halves the text matching, saves a round trip, and can never
    turn into a walk along a sorted index that tests every row until a page is
    full (with a rare or absent word that walk reads the whole table; figures in
    bench/README.md). The page is outer-joined
    to a one-row table, so the total comes back even when the page is empty.
    """
    return _text_search_template(args.get("sort") or "newest").params(_text_search_values(args))


def _text_search_values(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "category": args.get("category"),
        "min_price": args.get("min_price"),
        "max_price": args.get("max_price"),
        "in_stock": args.get("in_stock"),
        "ids": args.get("ids"),
        "q": args["q"],
        "limit": args["page_size"],
        "offset": (args["page"] - 1) * args["page_size"],
    }


def search(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """A page of listed products matching the filters, with the total count.

    Items are :class:`Product` objects, or rows with the same attributes for a
    text search (:func:`text_search_statement`).
    """
    if not args.get("q"):
        return paginate(session, search_statement(args), args["page"], args["page_size"])
    template = _text_search_template(args.get("sort") or "newest")
    rows = session.execute(template, _text_search_values(args)).all()
    return {
        "items": [row for row in rows if row.id is not None],
        "page": args["page"],
        "page_size": args["page_size"],
        "total": rows[0].total,
    }


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
    with transaction(session):
        product = Product(**data)
        session.add(product)
        session.flush()
        events.emit(session, events.created(product.id, product.name, product.price, product.stock))
        return product


def create_batch(session: Session, items: list[dict[str, Any]]) -> Sequence[Row[Any]]:
    """Add many products with one multi-row ``INSERT ... RETURNING`` (all or none).

    Returns the created rows (product columns, as attributes) in the order given.
    """
    with transaction(session):
        table = Product.__table__
        columns = [table.c[name] for name in PRODUCT_COLUMNS]
        statement = insert(table).returning(*columns, sort_by_parameter_order=True)
        rows = session.execute(statement, items).all()
        events.emit(
            session,
            [e for row in rows for e in events.created(row.id, row.name, row.price, row.stock)],
        )
        return rows


def update(session: Session, product_id: int, changes: dict[str, Any]) -> Product:
    """Change product fields (an admin may also restore an archived product)."""
    with transaction(session):
        product = get_product(session, product_id, include_archived=True, for_update=True)
        was_archived = product.archived
        for name, value in changes.items():
            if name in PATCH_FIELDS:
                setattr(product, name, value)
        session.flush()
        if product.archived != was_archived:
            change = events.archived if product.archived else events.restored
            events.emit(session, [change(product.id)])
        return product


def archive(session: Session, product_id: int) -> None:
    """Archive a product: it is no longer listed or reservable; its history stays. Idempotent."""
    with transaction(session):
        product = get_product(session, product_id, include_archived=True, for_update=True)
        if not product.archived:
            product.archived = True
            session.flush()
            events.emit(session, [events.archived(product.id)])
