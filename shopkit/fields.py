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


def signed_money_pattern(digits: int) -> str:
    """Like :func:`money_pattern`, with an optional minus sign (ledger amounts)."""
    return "^-" + money_pattern(digits)[1:].replace("[0-9]{1", "?[0-9]{1", 1)


def positive_money_pattern(digits: int) -> str:
    """Like :func:`money_pattern`, but not zero (``0``, ``0.0``, ``000.00``...)."""
    return r"^(?!0+(\.0{1,2})?$)" + money_pattern(digits)[1:]


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
        self._pattern = re.compile(money_pattern(digits))
        metadata = kwargs.pop("metadata", {})
        metadata = {"pattern": self._documented_pattern(digits), "example": "19.99", **metadata}
        super().__init__(metadata=metadata, **kwargs)

    def _documented_pattern(self, digits: int) -> str:
        """The pattern the OpenAPI document gives (what this field accepts or answers)."""
        return money_pattern(digits)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return format_money(Decimal(value))

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if not isinstance(value, str) or not self._pattern.fullmatch(value):
            raise self.make_error("invalid")
        return Decimal(value)


class SignedMoney(Money):
    """A :class:`Money` amount that may be negative: ledger entries (a debit is negative).

    Only ever answered, never read from a request.
    """

    def _documented_pattern(self, digits: int) -> str:
        return signed_money_pattern(digits)


NOT_POSITIVE = "The amount must be greater than zero."


class PositiveMoney(Money):
    """A :class:`Money` amount that must be greater than zero.

    A negative or zero amount (``"-5.00"``, ``"0"``) is refused with "must be
    greater than zero", not as a malformed amount; the documented pattern
    excludes zero and the minus sign, so a generated client never sends one.
    """

    def _documented_pattern(self, digits: int) -> str:
        return positive_money_pattern(digits)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if isinstance(value, str) and value.startswith("-") and self._pattern.fullmatch(value[1:]):
            raise ValidationError(NOT_POSITIVE)
        amount = super()._deserialize(value, attr, data, **kwargs)
        if amount <= 0:
            raise ValidationError(NOT_POSITIVE)
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
    """A string with surrounding whitespace removed; blank strings are refused.

    The OpenAPI document says so: at least one character, one of them not
    whitespace (``pattern: \\S``, which JSON Schema searches anywhere in the value).
    """

    def __init__(self, **kwargs: Any) -> None:
        validators = kwargs.get("validate") or []
        validators = validators if isinstance(validators, list | tuple) else [validators]
        metadata = kwargs.pop("metadata", {})
        if not any(isinstance(v, validate.Regexp) for v in validators):  # its own pattern rules
            metadata = {"pattern": r"\S", **metadata}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            raise ValidationError("Must not be blank.")
        return text
