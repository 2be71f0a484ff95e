"""What a purchase asks for and what one drive of its saga did, in memory.

A :class:`SagaRun` changes its detached :class:`~sales_service.models.Sale` as
the steps answer (prices, status, history) and notes each step; the store
(:mod:`sales_service.saga_store`) writes all of it at the drive's end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sales_service import observe
from sales_service.models import CANCELLED, COMPLETED, FAILED, Sale


@dataclass(frozen=True)
class NewSale:
    """What a customer asked to buy: ``(product_id, quantity)`` lines, distinct products.

    ``idempotency_key`` is the client's optional key; ``from_cart`` marks an
    order placed from the cart, whose lines leave the cart when it completes.
    """

    lines: tuple[tuple[int, int], ...]
    idempotency_key: str | None = None
    fingerprint: str | None = None
    from_cart: bool = False


#: The step logged when a sale settles in each status.
_FINAL_STEP = {COMPLETED: "complete", FAILED: "fail", CANCELLED: "cancel"}


def now() -> datetime:
    """The current moment, as the saga stamps it."""
    return datetime.now(UTC)


def history_entry(status: str, at: datetime) -> dict[str, str]:
    """One entry of an order's ``history``."""
    return {"status": status, "at": at.isoformat()}


@dataclass
class SagaRun:
    """One drive of a sale: the sale as it evolves, and the steps to log with it."""

    sale: Sale
    steps: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, str]] = field(default_factory=list)
    priced: bool = False
    open_steps: dict[str, observe.OpenStep] = field(default_factory=dict)
    settled: bool = False

    def log(self, step: str, outcome: str, *, at: datetime | None = None, **detail: Any) -> None:
        """Note a step; it is written with the sale's new state when the drive ends, with the
        moment it happened (``at``, by default now) as its ``created_at``."""
        moment = (at or now()).isoformat()
        self.steps.append({"step": step, "outcome": outcome, "detail": detail, "at": moment})
        observe.close_step(self.open_steps.pop(step, None), outcome)

    def finish(self, status: str, failure_code: str | None = None) -> None:
        """Settle the sale in ``status`` (``completed``, ``failed`` or ``cancelled``)."""
        sale = self.sale
        sale.status = status
        sale.failure_code = failure_code
        sale.updated_at = now()
        if status == COMPLETED:
            sale.completed_at = sale.updated_at
        elif status == CANCELLED:
            sale.cancelled_at = sale.updated_at
        self.history.append(history_entry(status, sale.updated_at))
        sale.history = [*(sale.history or []), self.history[-1]]
        self.log(_FINAL_STEP[status], "ok", at=sale.updated_at, code=failure_code)
        self.settled = True

    def reopen(self, status: str) -> None:
        """Put the sale back in ``status``: a cancellation refused for good (nothing was
        refunded or returned) leaves the order as it was. ``history`` shows the way back; it
        settles no sale, so nothing is counted."""
        sale = self.sale
        sale.status = status
        sale.updated_at = now()
        self.history.append(history_entry(status, sale.updated_at))
        sale.history = [*(sale.history or []), self.history[-1]]

    def price(self, reserved: dict[str, Any]) -> None:
        """Take each line's unit price and name from the reservation's answer."""
        sale = self.sale
        items = reserved.get("items") or [reserved]
        by_product = {int(item["product_id"]): item for item in items}
        for line in sale.lines:
            item = by_product[line.product_id]
            line.unit_price = Decimal(str(item["unit_price"]))
            line.product_name = str(item["name"])
        # Every line is priced now: no line_total is None.
        sale.total = sum((line.line_total or Decimal(0) for line in sale.lines), Decimal("0.00"))
        if len(sale.lines) == 1:
            sale.product_name = sale.lines[0].product_name
            sale.unit_price = sale.lines[0].unit_price
        self.priced = True

    def count_settled(self) -> None:
        """Count the sale's outcome once its new state is committed (if the drive settled it)."""
        if self.settled:
            observe.settled(self.sale.status, self.sale.failure_code)
