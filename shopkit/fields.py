"""Marshmallow fields shared by the services' schemas."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from marshmallow import ValidationError, fields

MONEY_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"
_MONEY_RE = re.compile(MONEY_PATTERN)
TWO_PLACES = Decimal("0.01")


def format_money(value: Decimal) -> str:
    """Render an amount as a decimal string with exactly two places."""
    return str(Decimal(value).quantize(TWO_PLACES))


class Money(fields.Field):
    """An amount of money: a decimal *string* with at most two places (``"19.99"``).

    Numbers, negative values, exponents and more than two places are refused
    so that no float ever touches money. Serialises with exactly two places.
    """

    default_error_messages = {
        "invalid": "Not a valid amount: use a decimal string with at most two places, e.g. "
        '"19.99".',
    }

    def __init__(self, **kwargs: Any) -> None:
        metadata = kwargs.pop("metadata", {})
        metadata = {"pattern": MONEY_PATTERN, "example": "19.99", **metadata}
        super().__init__(metadata=metadata, **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return format_money(Decimal(value))

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if not isinstance(value, str) or not _MONEY_RE.match(value):
            raise self.make_error("invalid")
        return Decimal(value)


class PositiveMoney(Money):
    """A :class:`Money` amount that must be greater than zero."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        amount = super()._deserialize(value, attr, data, **kwargs)
        if amount <= 0:
            raise ValidationError("The amount must be greater than zero.")
        return amount


class StrictInteger(fields.Integer):
    """An integer that must be a JSON integer: no strings, floats or booleans."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return int(super()._deserialize(value, attr, data, **kwargs))


class TrimmedString(fields.String):
    """A string with surrounding whitespace removed; blank strings are refused."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            raise ValidationError("Must not be blank.")
        return text
