"""After a replay: did each order's notifications arrive? (docs/events.rst)

Every order the replay completed tells its buyer so through events: the
notifications service turns ``shop.order.completed.v1`` (and ``cancelled``,
``shipped``, ``delivered`` after it) into a notification, asynchronously. While
the replay runs, :class:`NotificationTracker` notes each completed order with
the types its life made; once the run is over, :func:`check_notifications` reads
each buyer's ``GET /notifications`` (newest first, as the buyer) until every
order shows every one of its types, or until ``bound_s`` has passed since the
run ended. An order still missing one then is a failed check.

The check needs the events: the stack's broker (``EVENTS_URL``, which the
seeder sees in its environment as the services do) and the notifications
service. Without either it is skipped, with the reason, not failed. A run
stopped early (Ctrl-C, the services gone) is not checked either.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from seeder.client import ServiceApi, ServiceUnreachable, paged
from seeder.replay.plan import Shopper
from seeder.replay.stats import Outcome
from shopkit.events.catalog import EVENT_TYPES

#: Seconds after the run's end within which every notification must have arrived: the
#: ConsumerLagging alert's threshold (deploy/observability/alerts.yml).
DEFAULT_BOUND_S = 30.0
#: The most orders one run keeps to check (an endless demo run keeps the latest ones).
MAX_TRACKED = 5_000
#: Notifications older than the run's start by this much end a buyer's search (clock skew).
CLOCK_MARGIN = timedelta(minutes=5)
POLL_S = 0.5
PAGE_SIZE = 100


#: The catalogued order events' types by event (``completed`` → ``shop.order.completed.v1``).
ORDER_TYPES = {t.event: t.name for t in EVENT_TYPES if t.aggregate == "order"}


def order_type(event: str) -> str:
    """The CloudEvents type of an order event (``shop.order.completed.v1``)."""
    return ORDER_TYPES[event]


def expected_types(outcome: Outcome) -> frozenset[str]:
    """The notifications a completed order's life makes (none for another outcome).

    ``cancelling`` (a refund left to recovery) is not waited for: recovery may settle
    it after the bound.
    """
    if outcome.outcome != "completed" or not outcome.sale_id:
        return frozenset()
    events = {"completed"}
    if outcome.after == "cancelled":
        events.add("cancelled")
    elif outcome.after in ("shipped", "delivered"):
        events.add("shipped")
        if outcome.after == "delivered":
            events.add("delivered")
    return frozenset(order_type(event) for event in events)


@dataclass
class NotificationCheck:
    """What the check found: orders checked, notified in time, missing; or why skipped."""

    skipped: str | None = None
    orders: int = 0
    notified: int = 0
    waited_s: float = 0.0
    bound_s: float = DEFAULT_BOUND_S
    #: ``sale <id> of <shopper>: no shop.order.shipped.v1``, one line per order.
    missing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the replay's summary table."""
        if self.skipped:
            return f"not checked: {self.skipped}"
        if self.missing:
            return (
                f"{len(self.missing):,} of {self.orders:,} orders not notified within "
                f"{self.bound_s:g} s of the run's end"
            )
        return (
            f"{self.notified:,} of {self.orders:,} orders notified within {self.bound_s:g} s "
            f"of the run's end (all there after {self.waited_s:.1f} s)"
        )


class NotificationTracker:
    """The completed orders of one run, by buyer, as the attempts finish (thread-safe)."""

    def __init__(self, limit: int = MAX_TRACKED) -> None:
        self.limit = limit
        self.started = datetime.now(UTC)
        self._orders: dict[str, tuple[Shopper, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def note(self, shopper: Shopper, outcome: Outcome) -> None:
        """Remember ``outcome``'s order, if it completed (the oldest goes past the limit)."""
        types = expected_types(outcome)
        if not types or outcome.sale_id is None:
            return
        with self._lock:
            self._orders[outcome.sale_id] = (shopper, types)
            if len(self._orders) > self.limit:
                del self._orders[next(iter(self._orders))]

    def by_shopper(self) -> dict[str, tuple[Shopper, dict[str, frozenset[str]]]]:
        """The tracked orders grouped by buyer: ``username → (shopper, {sale id: types})``."""
        grouped: dict[str, tuple[Shopper, dict[str, frozenset[str]]]] = {}
        with self._lock:
            for sale_id, (shopper, types) in self._orders.items():
                grouped.setdefault(shopper.username, (shopper, {}))[1][sale_id] = types
        return grouped


def events_configured() -> str | None:
    """Why the stack's events cannot be checked from here (``None``: they can)."""
    if not os.environ.get("EVENTS_URL"):
        return "EVENTS_URL is not set (the stack runs without events: nothing notifies)"
    return None


def _seen(
    api: ServiceApi, shopper: Shopper, wanted: dict[str, set[str]], since: datetime
) -> dict[str, set[str]]:
    """The notifications of ``wanted``'s orders the buyer has now: ``sale id → types``."""
    found: dict[str, set[str]] = {}
    missing = sum(len(types) for types in wanted.values())

    def fetch(query: dict[str, Any]) -> Any:
        reply = shopper.login.call(api, "GET", "/notifications", params=query)
        if reply.status != 200:
            raise ServiceUnreachable("notifications", api.base_url, f"answered {reply.status}")
        return reply.body

    for item in paged(fetch, page_size=PAGE_SIZE) if missing else ():
        sale_id, kind = str(item.get("subject")), str(item.get("type"))
        if kind in wanted.get(sale_id, ()) and kind not in found.get(sale_id, set()):
            found.setdefault(sale_id, set()).add(kind)
            missing -= 1
        occurred = item.get("occurred_at")
        if not missing or (occurred and datetime.fromisoformat(occurred) < since - CLOCK_MARGIN):
            break  # all found, or older than the run: newest first, the rest is older still
    return found


def check_notifications(
    api: ServiceApi,
    tracker: NotificationTracker,
    *,
    bound_s: float = DEFAULT_BOUND_S,
    concurrency: int = 8,
) -> NotificationCheck:
    """Wait up to ``bound_s`` for every tracked order's notifications; what arrived."""
    reason = events_configured()
    if reason is None:
        try:
            api.ready()
        except ServiceUnreachable as exc:
            reason = f"the notifications service is not up ({exc})"
    if reason is not None:
        return NotificationCheck(skipped=reason, bound_s=bound_s)
    grouped = tracker.by_shopper()
    pending = {
        name: (shopper, {sale: set(types) for sale, types in orders.items()})
        for name, (shopper, orders) in grouped.items()
    }
    result = NotificationCheck(orders=sum(len(orders) for _, orders in grouped.values()))
    result.bound_s = bound_s
    started = time.monotonic()
    deadline = started + bound_s

    def poll(name: str) -> None:
        shopper, wanted = pending[name]
        try:
            seen = _seen(api, shopper, wanted, tracker.started)
        except ServiceUnreachable:
            return  # asked again next round, until the bound
        for sale_id, types in seen.items():
            wanted[sale_id] -= types
            if not wanted[sale_id]:
                del wanted[sale_id]

    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="notified") as pool:
        while True:
            waiting = [name for name, (_, wanted) in pending.items() if wanted]
            if not waiting or time.monotonic() >= deadline:
                break
            list(pool.map(poll, waiting))
            if any(wanted for _, wanted in pending.values()):
                time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
    result.waited_s = time.monotonic() - started
    result.missing = sorted(_missing_lines(pending.items()))
    result.notified = result.orders - len(result.missing)
    return result


def _missing_lines(
    pending: Iterable[tuple[str, tuple[Shopper, dict[str, set[str]]]]],
) -> list[str]:
    return [
        f"sale {sale_id} of {name}: no {', '.join(sorted(types))}"
        for name, (_, wanted) in pending
        for sale_id, types in wanted.items()
    ]
