"""What a replay did: each attempt's :class:`Outcome` and the run's live :class:`Stats`."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

#: How many recent attempts the latency percentiles cover.
LATENCY_WINDOW = 20_000


@dataclass
class Outcome:
    """What one attempt did; ``outcome`` is ``completed`` or the reason it was not.

    ``lines`` are the ``[product_id, quantity]`` pairs that went into the cart;
    ``after`` is what became of a completed order: ``cancelled``, ``shipped``,
    ``delivered``, or ``cancelling`` (a refund left to recovery).
    """

    attempt: int
    shopper: str
    lines: list[list[int]]
    outcome: str
    total: str | None = None
    topped_up: str | None = None
    after: str | None = None
    review: str | None = None
    restocked: list[int] = field(default_factory=list)
    sale_id: str | None = None
    latency_s: float = 0.0

    def record(self) -> dict[str, Any]:
        """The outcome without timings and ids (what must repeat for the same seed)."""
        data = asdict(self)
        data.pop("latency_s")
        data.pop("sale_id")
        return data


#: Someone else changed the shopper's cart between the replay's ``PUT`` and its checkout.
CART_CHANGED = "cart_changed"
#: Outcomes that are a shopper's ordinary luck rather than a failure.
SKIPS = {"sold_out", "product_gone", CART_CHANGED}
#: Outcomes after which the shopper's balance as last seen is still a good guess.
SETTLED_OUTCOMES = {"completed", "insufficient_stock", *SKIPS}


class Stats:
    """Live counters, shared by the workers and the display."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.finished: float | None = None
        self.attempts = 0
        self.completed = 0
        self.failed: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.verification_failures: list[str] = []
        #: Carts found changed by another actor on the same account (not failures).
        self.cart_changed = 0
        self.cart_changes: list[str] = []
        self.top_ups = 0
        self.money_topped_up = Decimal("0.00")
        self.money_spent = Decimal("0.00")
        self.money_refunded = Decimal("0.00")
        self.units_bought = 0
        #: Completed orders by their number of lines.
        self.baskets: Counter[int] = Counter()
        #: What became of completed orders: cancelled, shipped, delivered, cancelling.
        self.after: Counter[str] = Counter()
        self.reviews: Counter[str] = Counter()
        self.moderation: Counter[str] = Counter()
        self.restocks = 0
        # Latency percentiles are over the most recent attempts (all of a short run).
        self.purchase_latency: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.attempt_latency: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.errors: list[str] = []
        self.last_reachable = time.monotonic()
        self.unreachable_streak = 0
        self.last_unreachable: str | None = None

    def elapsed(self) -> float:
        """Seconds since the replay started (until it finished)."""
        return (self.finished or time.monotonic()) - self.started

    def rate(self) -> float:
        """Finished attempts per second."""
        elapsed = self.elapsed()
        return self.attempts / elapsed if elapsed > 0 else 0.0

    def percentile(self, which: str, q: float) -> float | None:
        """Latency percentile ``q`` (0-100) in seconds of ``purchase`` or ``attempt``."""
        with self.lock:
            values = sorted(getattr(self, f"{which}_latency"))
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        return float(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1])

    def eta(self, total: int) -> float | None:
        """Seconds until ``total`` attempts at the current rate (None before the first)."""
        rate = self.rate()
        if rate <= 0:
            return None
        return max(0.0, (total - self.attempts) / rate)

    def note_error(self, message: str) -> None:
        """Remember an unexpected error (the first 20) for the summary."""
        with self.lock:
            if len(self.errors) < 20:
                self.errors.append(message)

    def add_outcome(self, outcome: Outcome, purchase_latency: float | None) -> None:
        """Count a finished attempt."""
        with self.lock:
            self.attempts += 1
            self.attempt_latency.append(outcome.latency_s)
            if purchase_latency is not None:
                self.purchase_latency.append(purchase_latency)
            if outcome.outcome == "completed":
                self.completed += 1
                self.units_bought += sum(quantity for _, quantity in outcome.lines)
                self.baskets[len(outcome.lines)] += 1
                self.money_spent += Decimal(outcome.total or "0")
                if outcome.after:
                    self.after[outcome.after] += 1
                if outcome.after == "cancelled":
                    self.money_refunded += Decimal(outcome.total or "0")
            elif outcome.outcome in SKIPS:
                self.skipped[outcome.outcome] += 1
            else:
                self.failed[outcome.outcome] += 1
            if outcome.outcome.startswith("unreachable:"):
                self.unreachable_streak += 1
                self.last_unreachable = outcome.outcome.split(":", 1)[1]
            else:
                self.unreachable_streak = 0
                self.last_reachable = time.monotonic()
