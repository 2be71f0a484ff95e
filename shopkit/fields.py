"""Marshmallow fields shared by the services' schemas."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from marshmallow import ValidationError, fields, validate

#: Digits before the point of an ordinary amount: prices, balances, top-ups.
MONEY_DIGITS = 10


def money_pattern(digits: int) -> str:
    """The regular expression of an amount with at most ``digits`` digits before the point."""
    return rf"^[0-9]{{1,{digits}}}(\.[0-9]{{1,2}})?$"


MONEY_PATTERN = money_pattern(MONEY_DIGITS)
#: Digits before the point of a sale's total: up to 50 lines of 1,000 units (the sales
#: service's ``MAX_LINES`` and ``MAX_QUANTITY``) at the largest price.
SALE_TOTAL_DIGITS = MONEY_DIGITS + 5
TWO_PLACES = Decimal("0.01")
#: The largest id a PostgreSQL ``bigint`` holds; larger ids in requests are 422, never 500.
MAX_ID = 2**63 - 1


class FullMatch(validate.Regexp):
    """A ``Regexp`` validator that must match the *whole* value.

    ``re.match`` with a pattern ending in ``$`` also accepts a value followed by
    one newline (a look-alike of an existing username); ``fullmatch`` does not.
    The pattern keeps its ``^...$`` for the OpenAPI document, where it means the
    same as here.
    """

    def __call__(self, value: Any) -> Any:
        """Return ``value`` if the whole of it matches, else raise ``ValidationError``."""
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


def format_money(value: Decimal) -> str:
    """Render an amount as a decimal string with exactly two places."""
    return str(Decimal(value).quantize(TWO_PLACES))


class Money(fields.Field):
    """An amount of money: a decimal *string* with at most two places (``"19.99"``).

    Numbers, negative values, exponents and more than two places are refused
    so that no float ever touches money; at most ``digits`` digits before the
    point. Serialises with exactly two places.
    """

    default_error_messages = {
        "invalid": "Not a valid amount: use a decimal string with at most two places, e.g. "
        '"19.99".',
    }

    def __init__(self, *, digits: int = MONEY_DIGITS, **kwargs: Any) -> None:
        pattern = money_pattern(digits)
        self._pattern = re.compile(pattern)
        metadata = kwargs.pop("metadata", {})
        metadata = {"pattern": pattern, "example": "19.99", **metadata}
        super().__init__(metadata=metadata, **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return format_money(Decimal(value))

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if not isinstance(value, str) or not self._pattern.fullmatch(value):
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
