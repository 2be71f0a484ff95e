"""``replay``: simulated shoppers buying, topping up and reviewing; an admin moderating.

Each purchase attempt *i* draws everything it will do from its own
``random.Random`` seeded by ``(seed, i)`` before it starts: which shopper
(mildly skewed: some people shop more), which product (Zipf-like popularity
over a seeded ranking of the catalogue), 1-3 units, whether the shopper tops
up when short, whether and how they review. What an attempt *does* therefore
never depends on thread timing; what *happens* depends on the shop's state,
so with ``--concurrency 1`` the same seed on the same data gives the same
sequence of outcomes.

A shopper acts on one thing at a time (a lock per shopper) and knows their
balance, so every result is checked, not only its status code: a completed
sale must come back with ``total = unit_price * quantity``, must be in the
buyer's history with that total, and must have taken exactly that from the
balance; a refused sale must be ``failed`` and must have taken nothing.

Every ``replay`` run has its own ``run_id`` in its idempotency keys, so a
second run on the same data makes new purchases instead of replaying the
first run's answers, while a retried request inside one run is never applied
twice.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import statistics
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

from seeder.client import (
    ApiError,
    Login,
    LoginFailed,
    Reply,
    SeederError,
    Services,
    ServiceUnreachable,
    shopper_action,
)
from seeder.data import (
    RATING_WEIGHTS,
    RATINGS,
    CustomerFactory,
    derive_password,
    review_text,
    seeded,
    stream_seed,
)

QUANTITIES = (1, 2, 3)
QUANTITY_WEIGHTS = (0.7, 0.2, 0.1)
#: Zipf exponents: products (strongly skewed) and shoppers (mildly skewed).
PRODUCT_SKEW = 1.1
SHOPPER_SKEW = 0.6
#: Share of short shoppers who top up before buying (the others try anyway and are refused).
TOP_UP_WHEN_SHORT = 0.85
TOP_UP_EXTRAS = (0, 10, 20, 50, 100, 200)
BROWSE_SHARE = 0.3
REVIEW_SHARE = 0.3
#: Moderation: share of reviews left pending, then the weights of the decisions.
LEAVE_PENDING = 0.1
MODERATION_ACTIONS = ("approve", "flag", "reject")
MODERATION_WEIGHTS = (0.82, 0.1, 0.08)
MODERATION_NOTES = {
    "approve": None,
    "flag": "Needs a second look: possibly off-topic.",
    "reject": "Breaks the review guidelines.",
}
RESTOCK = {"food": 200, "clothes": 60, "accessories": 60, "electronics": 25}
SALE_RETRIES = 3
#: How many recent attempts the latency percentiles cover.
LATENCY_WINDOW = 20_000
#: Stop when every call has failed to connect for this long.
GIVE_UP_UNREACHABLE_S = 30.0


@dataclass(frozen=True)
class Product:
    """A product as the catalogue shows it."""

    id: int
    name: str
    price: Decimal


@dataclass
class Shopper:
    """A seeded customer being simulated: credentials, token, known balance, reviews."""

    username: str
    login: Login
    lock: threading.Lock = field(default_factory=threading.Lock)
    balance: Decimal | None = None
    reviewed: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Plan:
    """Everything purchase attempt *i* will do, drawn up front from its own RNG."""

    attempt: int
    shopper: int
    product: int
    quantity: int
    browse_page: int | None
    top_up_when_short: bool
    top_up_extra: int
    review: bool
    rating: int
    comment_seed: int


@dataclass
class Outcome:
    """What one purchase attempt did; ``outcome`` is ``completed`` or the reason it was not."""

    attempt: int
    shopper: str
    product_id: int
    product_name: str
    quantity: int
    outcome: str
    total: str | None = None
    topped_up: str | None = None
    review: str | None = None
    restocked: int | None = None
    latency_s: float = 0.0

    def record(self) -> dict[str, Any]:
        """The outcome without timings (what must repeat for the same seed)."""
        data = asdict(self)
        data.pop("latency_s")
        return data


#: Outcomes that are a shopper's ordinary luck rather than a failure.
SKIPS = {"sold_out", "product_gone"}
#: Outcomes after which the shopper's known balance is certain (checked against the service).
SETTLED_OUTCOMES = {"completed", "insufficient_funds", "insufficient_stock", *SKIPS}


@dataclass
class ReplayOptions:
    """How long, how fast and how wide a replay runs."""

    seed: int
    purchases: int | None = None
    duration_s: float | None = None
    rate: float = 0.0
    concurrency: int = 4
    customers: int | None = None
    review_share: float = REVIEW_SHARE
    moderate_every: int = 10
    keep_outcomes: bool = True
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


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
        self.top_ups = 0
        self.money_topped_up = Decimal("0.00")
        self.money_spent = Decimal("0.00")
        self.units_bought = 0
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
                self.units_bought += outcome.quantity
                self.money_spent += Decimal(outcome.total or "0")
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


class _Unreachable(Exception):
    """Ends an attempt whose service could not be reached."""


def _zipf_cumulative(count: int, exponent: float) -> list[float]:
    return list(itertools.accumulate(1.0 / (rank + 1) ** exponent for rank in range(count)))


def _pick(rng: random.Random, cumulative: list[float]) -> int:
    return min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)


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


class Replay:
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
        self.stop_event = threading.Event()
        self.abort_reason: SeederError | None = None
        seed = options.seed
        # Popularity: a seeded ranking of the catalogue and of the shoppers.
        self.catalog = list(catalog)
        seeded(stream_seed(seed, "popularity")).shuffle(self.catalog)
        self.product_weights = _zipf_cumulative(len(self.catalog), PRODUCT_SKEW)
        ranked = list(shoppers)
        seeded(stream_seed(seed, "shopper-ranking")).shuffle(ranked)
        self.shoppers = [
            Shopper(name, Login(services.customers, name, derive_password(seed, name)))
            for name in ranked
        ]
        self.shopper_weights = _zipf_cumulative(len(self.shoppers), SHOPPER_SKEW)
        self.left_pending: set[int] = set()
        self._moderation_lock = threading.Lock()
        self._moderation_passes = 0
        self._outcome_lock = threading.Lock()

    # --- planning -----------------------------------------------------------------------------

    def plan(self, attempt: int) -> Plan:
        """Purchase attempt ``attempt``: a pure function of the seed and ``attempt``."""
        rng = seeded(stream_seed(self.options.seed, f"attempt:{attempt}"))
        shopper = _pick(rng, self.shopper_weights)
        product = _pick(rng, self.product_weights)
        quantity = rng.choices(QUANTITIES, QUANTITY_WEIGHTS)[0]
        browse_page = rng.randint(1, 5) if rng.random() < BROWSE_SHARE else None
        top_up_when_short = rng.random() < TOP_UP_WHEN_SHORT
        top_up_extra = rng.choice(TOP_UP_EXTRAS)
        review = rng.random() < self.options.review_share
        rating = rng.choices(RATINGS, RATING_WEIGHTS)[0]
        return Plan(
            attempt,
            shopper,
            product,
            quantity,
            browse_page,
            top_up_when_short,
            top_up_extra,
            review,
            rating,
            rng.getrandbits(32),
        )

    def key(self, attempt: int, what: str) -> str:
        """An idempotency key for one step of one attempt of this run."""
        return f"seeder:{self.options.run_id}:{attempt}:{what}"

    # --- calls as a shopper -------------------------------------------------------------------

    def _as(self, shopper: Shopper, method: str, service: str, path: str, **kwargs: Any) -> Reply:
        """Call ``service`` with the shopper's token (logging in again once after a 401)."""
        return shopper.login.call(self.services.api(service), method, path, **kwargs)

    def _balance(self, shopper: Shopper) -> Decimal:
        reply = self._as(shopper, "GET", "customers", f"/customers/{shopper.username}")
        if reply.status != 200:
            raise ApiError(
                "customers", "GET", f"/customers/{shopper.username}", reply.status, reply.body
            )
        return Decimal(str(reply.body["balance"]))

    def _verify(self, outcome: Outcome, what: str) -> None:
        outcome.outcome = "verification_failed"
        with self.stats.lock:
            if len(self.stats.verification_failures) < 50:
                self.stats.verification_failures.append(
                    f"attempt {outcome.attempt} ({outcome.shopper}, product {outcome.product_id})"
                    f": {what}"
                )

    # --- one purchase attempt -----------------------------------------------------------------

    @shopper_action("shopper purchase")
    def attempt(self, index: int) -> Outcome:
        """Run purchase attempt ``index`` and check its result."""
        plan = self.plan(index)
        shopper = self.shoppers[plan.shopper]
        product = self.catalog[plan.product]
        outcome = Outcome(index, shopper.username, product.id, product.name, plan.quantity, "")
        started = time.perf_counter()
        purchase_latency: float | None = None
        with shopper.lock:
            try:
                purchase_latency = self._shop(plan, shopper, product, outcome)
            except ServiceUnreachable as exc:
                outcome.outcome = f"unreachable:{exc.service}"
            except LoginFailed:
                outcome.outcome = "login_failed"
            except ApiError as exc:
                outcome.outcome = f"error:{exc.status}:{exc.code or ''}".rstrip(":")
            except Exception as exc:  # an answer the seeder cannot read: count it, keep going
                outcome.outcome = f"error:{type(exc).__name__}"
                self.stats.note_error(f"attempt {index}: {type(exc).__name__}: {exc}")
            if outcome.outcome not in SETTLED_OUTCOMES:
                shopper.balance = None  # read it again before this shopper's next purchase
        outcome.latency_s = time.perf_counter() - started
        self.stats.add_outcome(outcome, purchase_latency)
        if self.options.keep_outcomes:
            with self._outcome_lock:
                self.outcomes.append(outcome)
        return outcome

    def _shop(
        self, plan: Plan, shopper: Shopper, product: Product, outcome: Outcome
    ) -> float | None:
        if shopper.balance is None:
            shopper.balance = self._balance(shopper)
        if plan.browse_page is not None:
            self.services.sales.get(
                "/catalog", params={"page": plan.browse_page, "page_size": 20}, expect=None
            )
        detail = self.services.sales.get(f"/catalog/{product.id}", expect=None)
        if detail.status == 404:
            outcome.outcome = "product_gone"
            return None
        if detail.status != 200:
            raise ApiError("sales", "GET", f"/catalog/{product.id}", detail.status, detail.body)
        category = str(detail.body.get("category") or "")
        price = Decimal(str(detail.body["price"]))
        if not detail.body.get("stock"):
            outcome.outcome = "sold_out"
            outcome.restocked = self._restock(plan.attempt, product.id, category)
            return None
        cost = price * plan.quantity
        if shopper.balance < cost and plan.top_up_when_short:
            outcome.topped_up = self._top_up(plan, shopper, cost - shopper.balance)
        sale, latency = self._buy(plan, shopper, product)
        self._settle(plan, shopper, product, category, sale, outcome)
        return latency

    def _top_up(self, plan: Plan, shopper: Shopper, shortfall: Decimal) -> str:
        tens = (shortfall / 10).to_integral_value(rounding=ROUND_CEILING)
        amount = Decimal(int(tens) * 10 + plan.top_up_extra).quantize(Decimal("0.01"))
        reply = self._as(
            shopper,
            "POST",
            "customers",
            f"/customers/{shopper.username}/wallet/charge",
            json={"amount": f"{amount:.2f}"},
            headers={"Idempotency-Key": self.key(plan.attempt, "top-up")},
        )
        if reply.status != 200:
            path = f"/customers/{shopper.username}/wallet/charge"
            raise ApiError("customers", "POST", path, reply.status, reply.body)
        shopper.balance = Decimal(str(reply.body["balance"]))
        with self.stats.lock:
            self.stats.top_ups += 1
            self.stats.money_topped_up += amount
        return f"{amount:.2f}"

    def _buy(self, plan: Plan, shopper: Shopper, product: Product) -> tuple[Reply, float]:
        """``POST /sales``, retried with the same key while the answer is not final."""
        started = time.perf_counter()
        reply: Reply | None = None
        unreachable: ServiceUnreachable | None = None
        for retry in range(SALE_RETRIES + 1):
            # Back off before a retry; once the replay is stopping, do not retry at all.
            if retry and self.stop_event.wait(0.25 * 2**retry):
                break
            try:
                reply = self._as(
                    shopper,
                    "POST",
                    "sales",
                    "/sales",
                    json={"product_id": product.id, "quantity": plan.quantity},
                    headers={"Idempotency-Key": self.key(plan.attempt, "sale")},
                )
            except ServiceUnreachable as exc:
                reply, unreachable = None, exc
                continue
            if reply.status == 503 or (reply.status == 409 and reply.code == "sale_in_progress"):
                continue
            break
        if reply is None:
            assert unreachable is not None
            raise unreachable
        return reply, time.perf_counter() - started

    def _settle(
        self,
        plan: Plan,
        shopper: Shopper,
        product: Product,
        category: str,
        reply: Reply,
        outcome: Outcome,
    ) -> None:
        """Classify the answer to ``POST /sales`` and check it against the services."""
        body = reply.body if isinstance(reply.body, dict) else {}
        if reply.status == 201:
            self._check_completed(plan, shopper, product, body, outcome)
            if outcome.outcome == "completed" and plan.review:
                outcome.review = self._review(plan, shopper, product, category)
            return
        if reply.status == 409 and reply.code in ("insufficient_stock", "insufficient_funds"):
            outcome.outcome = str(reply.code)
            self._check_failed(shopper, body, outcome)
            if reply.code == "insufficient_stock":
                outcome.restocked = self._restock(plan.attempt, product.id, category)
            return
        if reply.status in {202, 503}:
            outcome.outcome = "pending" if reply.status == 202 else "dependency_unavailable"
            shopper.balance = None  # the sale may still complete: read the balance again
            return
        outcome.outcome = f"error:{reply.status}:{reply.code or ''}".rstrip(":")
        shopper.balance = None

    def _check_completed(
        self, plan: Plan, shopper: Shopper, product: Product, sale: dict[str, Any], outcome: Outcome
    ) -> None:
        outcome.outcome = "completed"
        total = Decimal(str(sale.get("total")))
        outcome.total = f"{total:.2f}"
        expected_balance = (shopper.balance or Decimal(0)) - total
        problem = None
        if sale.get("status") != "completed":
            problem = f"status {sale.get('status')!r} in a 201 answer"
        elif sale.get("product_id") != product.id or sale.get("quantity") != plan.quantity:
            problem = "the sale is for another product or quantity"
        elif Decimal(str(sale.get("unit_price"))) * plan.quantity != total:
            problem = f"total {total} != unit price * {plan.quantity}"
        else:
            problem = self._check_history(shopper, str(sale.get("id")), total)
        if problem is None:
            shopper.balance = self._balance(shopper)
            if shopper.balance != expected_balance:
                problem = f"balance {shopper.balance} after the sale, expected {expected_balance}"
        if problem is not None:
            self._verify(outcome, problem)

    def _check_history(self, shopper: Shopper, sale_id: str, total: Decimal) -> str | None:
        """Why the buyer's history does not show ``sale_id`` completed for ``total`` (or None)."""
        history = self._as(
            shopper,
            "GET",
            "sales",
            f"/customers/{shopper.username}/sales",
            params={"page_size": 10},
        )
        items = (history.body or {}).get("items", []) if history.status == 200 else []
        match = [item for item in items if item.get("id") == sale_id]
        if not match:
            return "the sale is missing from the buyer's history"
        if match[0].get("status") != "completed" or Decimal(str(match[0].get("total"))) != total:
            return "the history shows another status or total"
        return None

    def _check_failed(self, shopper: Shopper, problem: dict[str, Any], outcome: Outcome) -> None:
        sale_id = problem.get("sale_id")
        if not sale_id:
            return self._verify(outcome, "a refused sale without its sale_id")
        reply = self._as(shopper, "GET", "sales", f"/sales/{sale_id}")
        if reply.status != 200 or reply.body.get("status") != "failed":
            return self._verify(outcome, f"refused sale {sale_id} is not 'failed'")
        before = shopper.balance
        shopper.balance = self._balance(shopper)
        if before is not None and shopper.balance != before:
            change = shopper.balance - before
            return self._verify(outcome, f"a refused sale changed the balance by {change}")
        return None

    # --- reviews, moderation, restocking ------------------------------------------------------

    def _review(self, plan: Plan, shopper: Shopper, product: Product, category: str) -> str:
        """Review the product just bought; returns ``"<rating>*"`` or why there is no review."""
        if not self.reviews_enabled:
            self.stats_count("reviews", "skipped: reviews unavailable")
            return "skipped:reviews_unavailable"
        if product.id in shopper.reviewed:
            return "skipped:already_reviewed"
        comment = review_text(seeded(plan.comment_seed), plan.rating, category)
        try:
            reply = self._as(
                shopper,
                "POST",
                "reviews",
                "/reviews",
                json={"product_id": product.id, "rating": plan.rating, "comment": comment},
            )
        except ServiceUnreachable:
            self.stats_count("reviews", "skipped: reviews unreachable")
            return "skipped:reviews_unreachable"
        if reply.status == 201:
            shopper.reviewed.add(product.id)
            self.stats_count("reviews", "submitted")
            return f"{plan.rating}*"
        reason = reply.code or str(reply.status)
        if reply.status == 409:
            shopper.reviewed.add(product.id)
        self.stats_count("reviews", f"skipped: {reason}")
        return f"skipped:{reason}"

    def stats_count(self, counter: str, key: str, amount: int = 1) -> None:
        """Add to one of the named counters of :attr:`stats`."""
        with self.stats.lock:
            getattr(self.stats, counter)[key] += amount

    def moderate(self) -> None:
        """One moderation pass: the admin works through the pending queue, oldest first."""
        if not self.reviews_enabled:
            return
        with self._moderation_lock:
            self._moderation_passes += 1
            rng = seeded(stream_seed(self.options.seed, f"moderation:{self._moderation_passes}"))
            try:
                self._moderate(rng)
            except ServiceUnreachable:
                self.stats_count("moderation", "skipped: reviews unreachable")
            except Exception as exc:  # count it, keep the shoppers going
                self.stats_count("moderation", f"failed: {type(exc).__name__}")
                self.stats.note_error(f"moderation: {type(exc).__name__}: {exc}")

    def _moderate(self, rng: random.Random) -> None:
        for page in range(1, 6):
            reply = self.services.reviews.get(
                "/reviews",
                params={"status": "pending", "page": page, "page_size": 100},
                token=self.admin.token(),
                expect=None,
            )
            if reply.status != 200:
                self.stats_count("moderation", f"skipped: {reply.code or reply.status}")
                return
            items = reply.body.get("items", [])
            fresh = [item for item in items if item["id"] not in self.left_pending]
            for item in fresh:
                if rng.random() < LEAVE_PENDING:
                    self.left_pending.add(item["id"])
                    self.stats_count("moderation", "left pending")
                    continue
                action = rng.choices(MODERATION_ACTIONS, MODERATION_WEIGHTS)[0]
                answer = self.services.reviews.post(
                    f"/reviews/{item['id']}/moderation",
                    json={"action": action, "note": MODERATION_NOTES[action]},
                    token=self.admin.token(),
                    expect=None,
                )
                done = {"approve": "approved", "flag": "flagged", "reject": "rejected"}[action]
                self.stats_count("moderation", done if answer.ok else f"failed: {answer.status}")
            if fresh or len(items) < 100:
                return

    def _restock(self, attempt: int, product_id: int, category: str) -> int | None:
        """The admin restocks a product a shopper found sold out; returns the units added."""
        quantity = RESTOCK.get(category, 50)
        reply = self.services.inventory.post(
            f"/products/{product_id}/restock",
            json={"quantity": quantity},
            token=self.admin.token(),
            headers={"Idempotency-Key": self.key(attempt, "restock")},
            expect=None,
        )
        if reply.status != 200:
            return None
        with self.stats.lock:
            self.stats.restocks += 1
        return quantity

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
