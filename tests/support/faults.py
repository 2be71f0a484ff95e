"""The fault suite's helpers: the shop it breaks, with quick recovery."""

from __future__ import annotations

from shopkit.registry import app
from tests.support.live import LiveStack

#: Sales settles stalled orders by itself quickly during the suite.
SALES_ENV = {"SALES_RECOVERY_INTERVAL": "1", "SALES_RECOVERY_AFTER": "2"}


def start_shop(stack: LiveStack, *, sales_workers: int = 2, as_deployed: bool = False) -> None:
    """Customers, inventory and sales, with quick periodic recovery.

    ``as_deployed`` runs sales in the layout ``make run``, Compose and Kubernetes give it
    (:mod:`shopkit.registry`: one worker, many threads, its pool); otherwise it runs
    ``sales_workers`` small workers (for tests that kill one of them).
    """
    stack.start("customers")
    stack.start("inventory")
    if as_deployed:
        sales = app("sales")
        stack.start(
            "sales",
            workers=sales.workers,
            threads=sales.threads,
            extra_env={**SALES_ENV, **sales.layout_env()},
        )
    else:
        stack.start("sales", workers=sales_workers, extra_env=SALES_ENV)
