"""Money as shoppers read it: the amount with its currency, formatted by Babel.

The services keep money as decimal strings without a currency; the shop's
one currency is ``SHOP_CURRENCY`` (an ISO 4217 code, ``USD`` by default) and
``SHOP_LOCALE`` (``en_US``) says how to write it: ``$1,234.50``,
``1.234,50 €``. Never a float on the way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency, is_currency

#: What each ledger entry's ``kind`` means to the shopper.
LEDGER_KINDS = {
    "charge": "top-up",
    "deduct": "deduction",
    "sale_debit": "payment",
    "refund_credit": "refund",
}


@dataclass(frozen=True)
class Money:
    """The shop's currency and locale, checked once at start."""

    currency: str = "USD"
    locale: str = "en_US"

    @classmethod
    def from_env(cls) -> Money:
        """``SHOP_CURRENCY`` and ``SHOP_LOCALE``; ``ValueError`` for an unknown one."""
        money = cls(
            currency=os.environ.get("SHOP_CURRENCY", "").strip().upper() or cls.currency,
            locale=os.environ.get("SHOP_LOCALE", "").strip() or cls.locale,
        )
        if not is_currency(money.currency):
            raise ValueError(f"SHOP_CURRENCY={money.currency!r} is not an ISO 4217 currency.")
        try:
            Locale.parse(money.locale)
        except (UnknownLocaleError, ValueError) as exc:
            raise ValueError(f"SHOP_LOCALE={money.locale!r} is not a known locale.") from exc
        return money

    def format(self, value: Any) -> str:
        """``"1234.5"`` → ``"$1,234.50"``; ``""`` for nothing, the value itself if not a number."""
        if value is None or value == "":
            return ""
        try:
            amount = Decimal(str(value))
        except (InvalidOperation, ValueError):
            return str(value)
        return format_currency(amount, self.currency, locale=self.locale)
