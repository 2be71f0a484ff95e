"""The fault suite's helpers: the shop it breaks, with quick recovery."""

from __future__ import annotations

from tests.support.live import LiveStack

#: Sales settles stalled orders by itself quickly during the suite.
SALES_ENV = {"SALES_RECOVERY_INTERVAL": "1", "SALES_RECOVERY_AFTER": "2"}


def start_shop(stack: LiveStack, *, sales_workers: int = 2) -> None:
    """Customers, inventory and sales, with quick periodic recovery."""
    stack.start("customers")
    stack.start("inventory")
    stack.start("sales", workers=sales_workers, extra_env=SALES_ENV)
