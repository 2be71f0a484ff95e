"""The one query of a product listing: inventory's ``GET /products`` and sales' ``GET /catalog``.

Both services read it with :class:`ProductQuerySchema`, so a query means
the same and is refused the same way on either: ``sort=bogus``,
``min_price=-1`` or ``page_size=0`` is 422 on both.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from shopkit.fields import Money
from shopkit.pagination import PageArgsSchema

#: The product categories.
CATEGORIES = ("food", "clothes", "accessories", "electronics")
#: The orders a listing can be sorted in.
SORTS = ("newest", "price", "-price", "name", "-name", "rating")


class ProductQuerySchema(PageArgsSchema):
    """Query of a product listing: category, words, price range, sort order and page."""

    category = fields.String(validate=validate.OneOf(CATEGORIES))
    q = fields.String(
        validate=validate.Length(min=1, max=100),
        metadata={
            "description": "Words to find, case-insensitive: every word must begin a word "
            "of the name or description (full-text index)."
        },
    )
    min_price = Money(metadata={"description": "Lowest price, inclusive."})
    max_price = Money(metadata={"description": "Highest price, inclusive."})
    sort = fields.String(
        load_default="newest",
        validate=validate.OneOf(SORTS),
        metadata={
            "description": "newest (default, newest first), price / -price (ascending / "
            "descending), name / -name, rating (highest average first, unrated last; ties: "
            "more reviews first, then by id)."
        },
    )

    @validates_schema
    def _price_range(self, data: dict[str, Any], **_kwargs: Any) -> None:
        low, high = data.get("min_price"), data.get("max_price")
        if low is not None and high is not None and low > high:
            raise ValidationError("min_price must not exceed max_price.", "min_price")
