"""Pagination: ``page`` and ``page_size`` (≤ 100) in, ``{items, page, page_size, total}`` out."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_PAGE = 1_000_000


class PageArgsSchema(Schema):
    """Query arguments of every paginated collection."""

    page = fields.Integer(
        load_default=1,
        validate=validate.Range(min=1, max=MAX_PAGE),
        metadata={"description": "Page number, from 1."},
    )
    page_size = fields.Integer(
        load_default=DEFAULT_PAGE_SIZE,
        validate=validate.Range(min=1, max=MAX_PAGE_SIZE),
        metadata={"description": f"Items per page, 1 to {MAX_PAGE_SIZE}."},
    )


class PageMetaSchema(Schema):
    """The paging members of a page of results."""

    page = fields.Integer(required=True)
    page_size = fields.Integer(required=True)
    total = fields.Integer(required=True, metadata={"description": "Items across all pages."})


def page_schema(item_schema: type[Schema], name: str) -> type[Schema]:
    """A schema class for one page of ``item_schema`` items (named ``name`` in OpenAPI)."""
    return type(name, (PageMetaSchema,), {"items": fields.List(fields.Nested(item_schema))})


def paginate(session: Session, statement: Select[Any], page: int, page_size: int) -> dict[str, Any]:
    """Run ``statement`` for one page; return ``{items, page, page_size, total}``.

    ``statement`` must be ordered for pages to be stable.
    """
    total = session.execute(
        select(func.count()).select_from(statement.order_by(None).subquery())
    ).scalar_one()
    items = session.execute(statement.limit(page_size).offset((page - 1) * page_size)).scalars()
    return {"items": list(items), "page": page, "page_size": page_size, "total": total}
