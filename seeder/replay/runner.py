"""Running a replay: finding the shoppers and the catalogue, dispatching attempts, moderating."""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from seeder.client import (
    ApiError,
    Login,
    SeederError,
    Services,
    ServiceUnreachable,
)
from seeder.data import (
    CustomerFactory,
    derive_password,
    seeded,
    stream_seed,
)
from seeder.replay.attempt import Attempts
from seeder.replay.notified import NotificationCheck, NotificationTracker, check_notifications
from seeder.replay.plan import (
    LEAVE_PENDING,
    MODERATION_ACTIONS,
    MODERATION_NOTES,
    MODERATION_WEIGHTS,
    PRODUCT_SKEW,
    SHOPPER_SKEW,
    Product,
    ReplayOptions,
    Shopper,
    zipf_cumulative,
)
from seeder.replay.stats import Outcome, Stats

#: Stop when every call has failed to connect for this long.
GIVE_UP_UNREACHABLE_S = 30.0


def discover_customers(services: Services, admin: Login, seed: int) -> int:
    """How many of the seed's customers exist (they are created in order: probe, then bisect)."""
    factory = CustomerFactory(seed)

    def exists(index: int) -> bool:
        username = factory.get(index).username
        reply = services.customers.get(f"/customers/{username}", token=admin.token(), expect=None)
        if reply.status not in (200, 404):
            raise ApiError("customers", "GET", f"/customers/{username}", reply.status, reply.body)
        return reply.status == 200

    if not exists(0):
        return 0
    low, high = 0, 1  # low exists; find a high that does not
    while exists(high):
        low, high = high, high * 2 + 1
        if high > 5_000_000:
            return low + 1
    while high - low > 1:
        middle = (low + high) // 2
        if exists(middle):
            low = middle
        else:
            high = middle
    return high


def load_catalog(services: Services) -> list[Product]:
    """Every product in stock, as ``GET /catalog`` lists it, in a stable order."""
    products = [
        Product(int(item["id"]), str(item["name"]), Decimal(str(item["price"])))
        for item in services.sales.pages("/catalog")
    ]
    unique = {product.id: product for product in products}
    return sorted(unique.values(), key=lambda p: (p.name, p.price, p.id))


class Replay(Attempts):
    """Runs simulated shoppers against the services (see the module documentation)."""

    def __init__(
        self,
        services: Services,
        admin: Login,
        options: ReplayOptions,
        shoppers: list[str],
        catalog: list[Product],
        *,
        reviews_enabled: bool = True,
    ) -> None:
        if not shoppers:
            raise SeederError("No shoppers: populate the shop first (python -m seeder populate).")
        if not catalog:
            raise SeederError("The catalogue has nothing in stock: populate the shop first.")
        self.services = services
        self.admin = admin
        self.options = options
        self.reviews_enabled = reviews_enabled
        self.stats = Stats()
        self.outcomes: list[Outcome] = []
        self.notified = NotificationTracker()
        #: After the run: whether each order's notifications arrived (or why not checked).
        self.notification_check: NotificationCheck | None = None
        self.stop_event = threading.Event()
        self.abort_reason: SeederError | None = None
        seed = options.seed
        # Popularity: a seeded ranking of the catalogue and of the shoppers.
        self.catalog = list(catalog)
        seeded(stream_seed(seed, "popularity")).shuffle(self.catalog)
        self.product_weights = zipf_cumulative(len(self.catalog), PRODUCT_SKEW)
        ranked = list(shoppers)
        seeded(stream_seed(seed, "shopper-ranking")).shuffle(ranked)
        self.shoppers = [
            Shopper(name, Login(services.customers, name, derive_password(seed, name)))
            for name in ranked
        ]
        self.shopper_weights = zipf_cumulative(len(self.shoppers), SHOPPER_SKEW)
        #: Reviews this run's shoppers wrote and the admin has not looked at yet, oldest first.
        self._written_reviews: deque[int] = deque()
        self._moderation_lock = threading.Lock()
        self._moderation_passes = 0
        self._outcome_lock = threading.Lock()
        self._failure_streak = 0
        self._unknown_purchases = 0

    def moderate(self) -> None:
        """One moderation pass: the admin decides on the reviews this run's shoppers wrote
        since the last pass, oldest first (never on anyone else's review)."""
        if not self.reviews_enabled:
            return
        with self._moderation_lock:
            self._moderation_passes += 1
            rng = seeded(stream_seed(self.options.seed, f"moderation:{self._moderation_passes}"))
            written, self._written_reviews = self._written_reviews, deque()
        for index, review_id in enumerate(written):
            try:
                self._moderate(rng, review_id)
            except ServiceUnreachable:
                self.stats_count("moderation", "skipped: reviews unreachable")
                with self._moderation_lock:  # decide on them in a later pass
                    self._written_reviews.extendleft(reversed(list(written)[index:]))
                return
            except Exception as exc:  # count it, keep the shoppers going
                self.stats_count("moderation", f"failed: {type(exc).__name__}")
                self.stats.note_error(f"moderation: {type(exc).__name__}: {exc}")

    def _moderate(self, rng: random.Random, review_id: int) -> None:
        """Leave one review pending, or approve, flag or reject it (weighted draws)."""
        if rng.random() < LEAVE_PENDING:
            self.stats_count("moderation", "left pending")
            return
        action = rng.choices(MODERATION_ACTIONS, MODERATION_WEIGHTS)[0]
        answer = self.services.reviews.post(
            f"/reviews/{review_id}/moderation",
            json={"action": action, "note": MODERATION_NOTES[action]},
            token=self.admin.token(),
            expect=None,
        )
        done = {"approve": "approved", "flag": "flagged", "reject": "rejected"}[action]
        self.stats_count("moderation", done if answer.ok else f"failed: {answer.status}")

    # --- the run ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the run to stop: no new attempts; those in flight finish."""
        self.stop_event.set()

    def _give_up_if_unreachable(self) -> None:
        stats = self.stats
        if (
            stats.unreachable_streak >= 10
            and time.monotonic() - stats.last_reachable > GIVE_UP_UNREACHABLE_S
        ):
            service = stats.last_unreachable or "customers"
            self.abort_reason = ServiceUnreachable(
                service,
                self.services.api(service).base_url,
                f"no answer for {GIVE_UP_UNREACHABLE_S:.0f} s, giving up",
            )
            self.stop_event.set()

    def run(self) -> Stats:
        """Dispatch attempts until the count, the duration or :meth:`stop`; wait for them."""
        options = self.options
        concurrency = max(1, options.concurrency)
        slots = threading.BoundedSemaphore(concurrency)
        deadline = (
            time.monotonic() + options.duration_s
            if options.duration_s is not None and options.duration_s > 0
            else math.inf
        )
        interval = 1.0 / options.rate if options.rate > 0 else 0.0
        next_at = time.monotonic()
        self.stats.started = time.monotonic()

        def task(function: Callable[..., object], *args: object) -> None:
            try:
                function(*args)
            finally:
                slots.release()

        def acquire() -> bool:
            while not self.stop_event.is_set():
                if slots.acquire(timeout=0.2):
                    return True
            return False

        pool = ThreadPoolExecutor(concurrency, thread_name_prefix="shopper")
        try:
            for index in itertools.count():
                if options.purchases is not None and index >= options.purchases:
                    break
                if time.monotonic() >= deadline or self.stop_event.is_set():
                    break
                if interval:
                    delay = next_at - time.monotonic()
                    if delay > 0 and self.stop_event.wait(min(delay, deadline - time.monotonic())):
                        break
                    next_at = max(next_at + interval, time.monotonic() - 1.0)
                    if time.monotonic() >= deadline:
                        break
                if not acquire():
                    break
                pool.submit(task, self.attempt, index)
                if options.moderate_every and (index + 1) % options.moderate_every == 0:
                    if not acquire():
                        break
                    pool.submit(task, self.moderate)
                self._give_up_if_unreachable()
        finally:
            pool.shutdown(wait=True)
        if not self.stop_event.is_set() and options.purchases is not None:
            self.moderate()  # a last pass, so most reviews of a counted run get moderated
        self.stats.finished = time.monotonic()
        self.outcomes.sort(key=lambda o: o.attempt)
        return self.stats

    def check_notifications(self) -> NotificationCheck:
        """After :meth:`run`: wait (boundedly) for each completed order's notifications.

        A missing one is a failed check; a run stopped early is not checked.
        """
        if self.stop_event.is_set():
            check = NotificationCheck(skipped="the run was stopped before its end")
        else:
            check = check_notifications(
                self.services.notifications,
                self.notified,
                bound_s=self.options.notification_bound_s,
                concurrency=self.options.concurrency,
            )
        self.notification_check = check
        with self.stats.lock:
            self.stats.verification_failures.extend(
                f"notification missing: {line}" for line in check.missing
            )
        return check
