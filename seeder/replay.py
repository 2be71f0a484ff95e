"""``replay``: simulated shoppers filling carts, checking out, topping up, cancelling and
reviewing; an admin shipping, delivering, restocking and moderating.

Each attempt *i* draws everything it will do from its own ``random.Random``
seeded by ``(seed, i)`` before it starts: which shopper (mildly skewed: some
people shop more), a basket of 1-4 distinct products (small baskets are the
most common; Zipf-like popularity over a seeded ranking of the catalogue) with
1-3 units each, whether the shopper tops up when short, whether they cancel
the order (about 5 %), whether the admin ships it and then delivers it,
which carrier and tracking number, and whether and how the shopper reviews a
product of the order. What an attempt *does* therefore never depends on thread
timing; what *happens* depends on the shop's state, so with ``--concurrency 1``
the same seed on the same data gives the same sequence of outcomes.

An attempt: the shopper empties a cart left over from before, looks at each
product's page (a product gone or sold out is left out, and the admin
restocks a sold-out one), puts each line in the cart with
``PUT /cart/items/{id}``, tops up if short and checks out with
``POST /cart/checkout`` and an ``Idempotency-Key``.

A shopper acts on one thing at a time (a lock per shopper), and every result
is checked, not only its status code. The checks hold whoever else acts on the
same account (a second replay on the same seed, the demo, a person signed in
as a seeded shopper): an order is checked against itself and its own ledger
entries (``GET /ledger?sale_id=``), never against a balance another actor can
move:

* a completed order has lines with ``line_total = unit_price * quantity`` and
  a total equal to the sum of its lines; it is in the buyer's history with
  that total; the wallet was debited exactly once, by exactly that total;
* a refused order is ``failed`` and took nothing: no ledger entry names it;
* a cancellation answers ``cancelled`` and gives back exactly the total, once:
  the same request again (same key) replays the answer, and the order still
  has one debit and one refund;
* a shipment answers ``shipped`` with its carrier and tracking number, a
  delivery ``delivered``.

The cart belongs to the account, so another actor can change it between the
replay's ``PUT`` and its checkout: an order whose lines are not the basket, a
refused order's cart not kept, or lines still in the cart after an order are
counted as *cart changed* (:data:`CART_CHANGED`), not as failed checks.

The admin moderates only the reviews this run's shoppers wrote (their ids, from
the ``201`` answers): never a review written by anyone else.

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

#: Lines per basket: small baskets are the most common.
LINE_COUNTS = (1, 2, 3, 4)
LINE_COUNT_WEIGHTS = (0.5, 0.27, 0.15, 0.08)
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
#: The order's life: share of completed orders the buyer cancels; of the others, the share
#: the admin ships; of those, the share the admin then delivers.
CANCEL_SHARE = 0.05
SHIP_SHARE = 0.5
DELIVER_SHARE = 0.6
CARRIERS = ("DHL", "UPS", "FedEx", "GLS", "La Poste", "Royal Mail")
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
    """A seeded customer being simulated: credentials, token, known balance, cart, reviews."""

    username: str
    login: Login
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: The balance as last seen: only to decide whether to top up (others may move it).
    balance: Decimal | None = None
    #: False when the cart may hold something (a refused order's lines, an earlier run's).
    cart_empty: bool = False
    reviewed: set[int] = field(default_factory=set)


class Unverifiable(Exception):
    """A check could not read what it needed (an outage): neither passed nor failed."""


@dataclass(frozen=True)
class Plan:
    """Everything attempt *i* will do, drawn up front from its own RNG."""

    attempt: int
    shopper: int
    #: The basket: ``(index in the ranked catalogue, quantity)``, distinct products.
    lines: tuple[tuple[int, int], ...]
    browse_page: int | None
    top_up_when_short: bool
    top_up_extra: int
    cancel: bool
    ship: bool
    deliver: bool
    carrier: str
    tracking_number: str
    review: bool
    #: Which line's product gets reviewed (modulo the lines actually bought).
    review_line: int
    rating: int
    comment_seed: int


@dataclass
class Line:
    """One line of a basket: the product, how many, and its category (for restocks)."""

    product: Product
    quantity: int
    category: str


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


@dataclass
class ReplayOptions:
    """How long, how fast and how wide a replay runs, and what becomes of the orders."""

    seed: int
    purchases: int | None = None
    duration_s: float | None = None
    rate: float = 0.0
    concurrency: int = 4
    customers: int | None = None
    review_share: float = REVIEW_SHARE
    cancel_share: float = CANCEL_SHARE
    ship_share: float = SHIP_SHARE
    deliver_share: float = DELIVER_SHARE
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


def _quantities(record: dict[str, Any]) -> dict[int, int]:
    """``{product_id: quantity}`` of a cart or an order."""
    return {int(item["product_id"]): int(item["quantity"]) for item in record.get("items") or []}


def _basket_difference(record: dict[str, Any], wanted: dict[int, int], what: str) -> str | None:
    """How a cart's or an order's lines differ from the basket ``wanted`` (or None)."""
    items = record.get("items") or []
    if len(items) != len(wanted) or _quantities(record) != wanted:
        return f"the {what} has lines {_quantities(record)}, expected {wanted}"
    return None


def _lines_problem(record: dict[str, Any], what: str) -> str | None:
    """Why a cart's or an order's lines do not add up (or None)."""
    items = record.get("items") or []
    for item in items:
        price, quantity = Decimal(str(item.get("unit_price"))), int(item["quantity"])
        if Decimal(str(item.get("line_total"))) != price * quantity:
            return (
                f"{what} line of product {item['product_id']}: "
                f"{item.get('line_total')} != {quantity} x {price}"
            )
    total = Decimal(str(record.get("total")))
    lines_sum = sum((Decimal(str(item["line_total"])) for item in items), Decimal(0))
    if total != lines_sum:
        return f"{what} total {total} != the sum of its lines {lines_sum}"
    return None


def _cart_problem(cart: dict[str, Any]) -> str | None:
    """Why the cart's lines are not priced right, line by line and in total (or None)."""
    return _lines_problem(cart, "cart")


def _order_problem(sale: dict[str, Any]) -> str | None:
    """Why a completed order's answer is not right in itself (or None).

    Its status is ``completed``, it has lines, each line's total is ``unit_price *
    quantity`` and the order's total is the sum of its lines; a one-line order
    also carries that line's product and quantity at the top level.
    """
    if sale.get("status") != "completed":
        return f"status {sale.get('status')!r} in a 201 answer"
    items = sale.get("items") or []
    if not items:
        return "a completed order without lines"
    problem = _lines_problem(sale, "order")
    if problem is not None:
        return problem
    if len(items) == 1 and (sale.get("product_id"), sale.get("quantity")) != (
        items[0]["product_id"],
        items[0]["quantity"],
    ):
        return "a one-line order without its product and quantity at the top level"
    return None


def _money_problem(
    entries: list[dict[str, Any]], total: Decimal | None, *, refunded: bool = False
) -> str | None:
    """Why an order's own ledger entries are wrong (or None).

    ``entries`` are every wallet movement naming the order. An order that was
    paid (``total`` given) has exactly one debit of ``-total``, and, if
    ``refunded``, exactly one refund of ``+total``; a refused one (``total``
    None) has none at all. This is how a double charge shows, whoever else
    moves the same wallet meanwhile.
    """
    if total is None:
        amounts = ", ".join(str(e.get("amount")) for e in entries)
        return f"a refused order moved money: {amounts}" if entries else None
    kinds = {"sale_debit": [-total], "refund_credit": [total] if refunded else []}
    others = sorted({str(e.get("kind")) for e in entries} - set(kinds))
    if others:
        return f"ledger entries of kinds {others} name the order"
    for kind, wanted in kinds.items():
        found = [Decimal(str(e["amount"])) for e in entries if e.get("kind") == kind]
        if found == wanted:
            continue
        what = "charged" if kind == "sale_debit" else "refunded"
        listed = ", ".join(f"{amount:.2f}" for amount in found) or "nothing"
        expected = f"once {wanted[0]:.2f}" if wanted else "nothing"
        return f"{what} {len(found)} times for the order ({listed}), expected {expected}"
    return None


def _backoff(retry: int, reply: Reply | None) -> float:
    """Seconds before retry ``retry`` of a purchase: exponential with jitter, and at least
    the answer's ``Retry-After`` (capped at 2 s)."""
    pause = 0.25 * 2**retry * random.uniform(0.5, 1.5)  # noqa: S311
    retry_after = (reply.headers or {}).get("Retry-After", "") if reply is not None else ""
    if retry_after.isdigit():
        pause = max(pause, min(2.0, float(retry_after)))
    return pause


def _basket(lines: list[Line]) -> dict[int, int]:
    """``{product_id: quantity}`` of the lines the shopper put in the cart."""
    return {line.product.id: line.quantity for line in lines}


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
        #: Reviews this run's shoppers wrote and the admin has not looked at yet, oldest first.
        self._written_reviews: deque[int] = deque()
        self._moderation_lock = threading.Lock()
        self._moderation_passes = 0
        self._outcome_lock = threading.Lock()
        self._failure_streak = 0

    # --- planning -----------------------------------------------------------------------------

    def plan(self, attempt: int) -> Plan:
        """Attempt ``attempt``: a pure function of the seed and ``attempt``."""
        options = self.options
        rng = seeded(stream_seed(options.seed, f"attempt:{attempt}"))
        shopper = _pick(rng, self.shopper_weights)
        count = min(rng.choices(LINE_COUNTS, LINE_COUNT_WEIGHTS)[0], len(self.catalog))
        products: list[int] = []
        while len(products) < count:  # distinct products, each by popularity
            product = _pick(rng, self.product_weights)
            if product not in products:
                products.append(product)
        lines = tuple((p, rng.choices(QUANTITIES, QUANTITY_WEIGHTS)[0]) for p in products)
        browse_page = rng.randint(1, 5) if rng.random() < BROWSE_SHARE else None
        top_up_when_short = rng.random() < TOP_UP_WHEN_SHORT
        top_up_extra = rng.choice(TOP_UP_EXTRAS)
        cancel = rng.random() < options.cancel_share
        ship = rng.random() < options.ship_share
        deliver = rng.random() < options.deliver_share
        carrier = rng.choice(CARRIERS)
        tracking_number = f"{carrier[:2].upper()}{rng.randrange(10**11):011d}"
        review = rng.random() < options.review_share
        review_line = rng.randrange(4)
        rating = rng.choices(RATINGS, RATING_WEIGHTS)[0]
        return Plan(
            attempt,
            shopper,
            lines,
            browse_page,
            top_up_when_short,
            top_up_extra,
            cancel,
            ship and not cancel,
            ship and deliver and not cancel,
            carrier,
            tracking_number,
            review,
            review_line,
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

    def _expect(
        self, shopper: Shopper, method: str, service: str, path: str, status: int, **kwargs: Any
    ) -> Reply:
        """Call as the shopper; raise :class:`ApiError` unless the answer is ``status``."""
        reply = self._as(shopper, method, service, path, **kwargs)
        if reply.status != status:
            raise ApiError(service, method, path, reply.status, reply.body)
        return reply

    def _balance(self, shopper: Shopper) -> Decimal:
        path = f"/customers/{shopper.username}"
        return Decimal(str(self._expect(shopper, "GET", "customers", path, 200).body["balance"]))

    def _cart(self, shopper: Shopper) -> dict[str, Any]:
        return dict(self._expect(shopper, "GET", "sales", "/cart", 200).body)

    def _sale_ledger(self, sale_id: str) -> list[dict[str, Any]]:
        """Every wallet movement naming ``sale_id`` (``GET /ledger?sale_id=``, as the admin)."""
        reply = self.services.customers.get(
            "/ledger",
            params={"sale_id": sale_id, "page_size": 100},
            token=self.admin.token(),
            expect=None,
        )
        if reply.status != 200:
            raise Unverifiable(f"the order's ledger entries could not be read ({reply.status})")
        return list(reply.body.get("items") or [])

    def _cart_changed(self, outcome: Outcome, what: str) -> None:
        """Count a cart another actor changed (not a failed check) and note the first ones."""
        with self.stats.lock:
            self.stats.cart_changed += 1
            if len(self.stats.cart_changes) < 20:
                self.stats.cart_changes.append(
                    f"attempt {outcome.attempt} ({outcome.shopper}): {what}"
                )

    def _verify(self, outcome: Outcome, what: str) -> None:
        outcome.outcome = "verification_failed"
        sale = f", sale {outcome.sale_id}" if outcome.sale_id else ""
        with self.stats.lock:
            if len(self.stats.verification_failures) < 50:
                self.stats.verification_failures.append(
                    f"attempt {outcome.attempt} ({outcome.shopper}{sale}): {what}"
                )

    # --- one attempt --------------------------------------------------------------------------

    @shopper_action("shopper purchase")
    def attempt(self, index: int) -> Outcome:
        """Run attempt ``index`` and check its results."""
        plan = self.plan(index)
        shopper = self.shoppers[plan.shopper]
        outcome = Outcome(index, shopper.username, [], "")
        started = time.perf_counter()
        purchase_latency: float | None = None
        self._pause_while_failing()
        with shopper.lock:
            try:
                purchase_latency = self._shop(plan, shopper, outcome)
            except ServiceUnreachable as exc:
                outcome.outcome = f"unreachable:{exc.service}"
            except LoginFailed:
                outcome.outcome = "login_failed"
            except Unverifiable as exc:
                outcome.outcome = "unverified"
                self.stats.note_error(f"attempt {index}: not verified: {exc}")
            except ApiError as exc:
                outcome.outcome = f"error:{exc.status}:{exc.code or ''}".rstrip(":")
            except Exception as exc:  # an answer the seeder cannot read: count it, keep going
                outcome.outcome = f"error:{type(exc).__name__}"
                self.stats.note_error(f"attempt {index}: {type(exc).__name__}: {exc}")
            if outcome.outcome not in SETTLED_OUTCOMES:
                shopper.balance = None  # read it again before this shopper's next purchase
                shopper.cart_empty = False
        outcome.latency_s = time.perf_counter() - started
        self._note_failure(outcome)
        self.stats.add_outcome(outcome, purchase_latency)
        if self.options.keep_outcomes:
            with self._outcome_lock:
                self.outcomes.append(outcome)
        return outcome

    def _shop(self, plan: Plan, shopper: Shopper, outcome: Outcome) -> float | None:
        if shopper.balance is None:
            shopper.balance = self._balance(shopper)
        if not shopper.cart_empty:  # a new basket: drop what an earlier attempt left
            self._expect(shopper, "DELETE", "sales", "/cart", 204)
            shopper.cart_empty = True
        if plan.browse_page is not None:
            self.services.sales.get(
                "/catalog", params={"page": plan.browse_page, "page_size": 20}, expect=None
            )
        lines, skipped = self._look(plan, outcome)
        cart = self._fill_cart(shopper, lines, outcome) if lines else None
        if cart is None:
            outcome.outcome = "sold_out" if "sold_out" in skipped else "product_gone"
            return None
        problem = _cart_problem(cart)
        if problem is not None:
            self._verify(outcome, problem)
            return None
        changed = _basket_difference(cart, _basket(lines), "cart")
        if changed is not None:  # someone else shops as this customer: leave the cart to them
            outcome.outcome = CART_CHANGED
            self._cart_changed(outcome, changed)
            return None
        cost = Decimal(str(cart["total"]))
        if shopper.balance < cost and plan.top_up_when_short:
            outcome.topped_up = self._top_up(plan, shopper, cost - shopper.balance)
        reply, latency = self._checkout(plan, shopper)
        self._settle(plan, shopper, lines, cart, reply, outcome)
        return latency

    def _look(self, plan: Plan, outcome: Outcome) -> tuple[list[Line], set[str]]:
        """Look at each planned product's page: the lines to buy, and why others were left."""
        lines: list[Line] = []
        skipped: set[str] = set()
        for index, quantity in plan.lines:
            product = self.catalog[index]
            detail = self.services.sales.get(f"/catalog/{product.id}", expect=None)
            if detail.status == 404:
                skipped.add("product_gone")
                continue
            if detail.status != 200:
                raise ApiError("sales", "GET", f"/catalog/{product.id}", detail.status, detail.body)
            category = str(detail.body.get("category") or "")
            if not detail.body.get("stock"):
                skipped.add("sold_out")
                self._restock(plan.attempt, product.id, category, outcome)
                continue
            lines.append(Line(product, quantity, category))
        return lines, skipped

    def _fill_cart(
        self, shopper: Shopper, lines: list[Line], outcome: Outcome
    ) -> dict[str, Any] | None:
        """Put each line in the cart (``PUT /cart/items/{id}``); the cart, or None if empty."""
        cart: dict[str, Any] | None = None
        for line in list(lines):
            path = f"/cart/items/{line.product.id}"
            reply = self._as(shopper, "PUT", "sales", path, json={"quantity": line.quantity})
            if reply.status == 404:  # archived since its page was read
                lines.remove(line)
                continue
            if reply.status != 200:
                raise ApiError("sales", "PUT", path, reply.status, reply.body)
            shopper.cart_empty = False
            cart = reply.body
        outcome.lines = [[line.product.id, line.quantity] for line in lines]
        return cart

    def _top_up(self, plan: Plan, shopper: Shopper, shortfall: Decimal) -> str:
        tens = (shortfall / 10).to_integral_value(rounding=ROUND_CEILING)
        amount = Decimal(int(tens) * 10 + plan.top_up_extra).quantize(Decimal("0.01"))
        reply = self._expect(
            shopper,
            "POST",
            "customers",
            f"/customers/{shopper.username}/wallet/charge",
            200,
            json={"amount": f"{amount:.2f}"},
            headers={"Idempotency-Key": self.key(plan.attempt, "top-up")},
        )
        shopper.balance = Decimal(str(reply.body["balance"]))
        with self.stats.lock:
            self.stats.top_ups += 1
            self.stats.money_topped_up += amount
        return f"{amount:.2f}"

    def _checkout(self, plan: Plan, shopper: Shopper) -> tuple[Reply, float]:
        """``POST /cart/checkout``, retried with the same key while the answer is not final."""
        started = time.perf_counter()
        reply: Reply | None = None
        unreachable: ServiceUnreachable | None = None
        for retry in range(SALE_RETRIES + 1):
            # Back off before a retry; once the replay is stopping, do not retry at all.
            if retry and self.stop_event.wait(_backoff(retry, reply)):
                break
            try:
                reply = self._as(
                    shopper,
                    "POST",
                    "sales",
                    "/cart/checkout",
                    headers={"Idempotency-Key": self.key(plan.attempt, "checkout")},
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
        lines: list[Line],
        cart: dict[str, Any],
        reply: Reply,
        outcome: Outcome,
    ) -> None:
        """Classify the answer to the checkout, check it, then live the order's life."""
        body = reply.body if isinstance(reply.body, dict) else {}
        if reply.status == 201:
            outcome.sale_id = str(body.get("id"))
            self._check_completed(shopper, lines, body, outcome)
            if outcome.outcome == "completed":
                self._after(plan, shopper, lines, body, outcome)
            return
        if reply.status == 409 and reply.code == "cart_empty":  # emptied by someone else
            outcome.outcome = CART_CHANGED
            self._cart_changed(outcome, "the cart was empty at checkout")
            return
        refusal = {
            (409, "insufficient_stock"): "insufficient_stock",
            (409, "insufficient_funds"): "insufficient_funds",
            (404, "not_found"): "product_gone",
        }.get((reply.status, reply.code or ""))
        if refusal is not None:
            outcome.outcome = refusal
            outcome.sale_id = str(body["sale_id"]) if body.get("sale_id") else None
            self._check_refused(shopper, cart, body, outcome)
            if refusal == "insufficient_stock":  # the admin restocks every short line
                categories = {line.product.id: line.category for line in lines}
                for short in body.get("products") or []:
                    product = int(short["product_id"])
                    self._restock(plan.attempt, product, categories.get(product, ""), outcome)
            return
        if reply.status in {202, 503}:
            # 202 or 503 ``sale_pending``: recorded, recovery settles it; any other 503:
            # nothing was recorded.
            recorded = reply.status == 202 or reply.code == "sale_pending"
            outcome.outcome = "pending" if recorded else "unavailable"
            if recorded and body.get("sale_id"):
                outcome.sale_id = str(body["sale_id"])
            shopper.balance = None  # the order may still complete: read the balance again
            return
        outcome.outcome = f"error:{reply.status}:{reply.code or ''}".rstrip(":")
        shopper.balance = None

    def _check_completed(
        self, shopper: Shopper, lines: list[Line], sale: dict[str, Any], outcome: Outcome
    ) -> None:
        """A completed order is right in itself, in the buyer's history and debited once."""
        outcome.outcome = "completed"
        total = Decimal(str(sale.get("total")))
        outcome.total = f"{total:.2f}"
        if shopper.balance is not None:
            shopper.balance -= total
        problem = _order_problem(sale)
        if problem is None:
            problem = self._check_history(shopper, str(sale["id"]), "completed", total)
        if problem is None:
            problem = _money_problem(self._sale_ledger(str(sale["id"])), total)
        if problem is not None:
            return self._verify(outcome, problem)
        basket = _basket(lines)
        changed = _basket_difference(sale, basket, "order")
        if changed is not None:
            self._cart_changed(outcome, changed)
        left = set(_quantities(self._cart(shopper))) & set(_quantities(sale))
        shopper.cart_empty = not left
        if left and changed is None:
            self._cart_changed(outcome, f"products {sorted(left)} in the cart after the order")
        return None

    def _check_history(
        self, shopper: Shopper, sale_id: str, status: str, total: Decimal
    ) -> str | None:
        """Why the buyer's history does not show ``sale_id`` in ``status`` for ``total``."""
        history = self._as(
            shopper,
            "GET",
            "sales",
            f"/customers/{shopper.username}/sales",
            params={"page_size": 50},
        )
        if history.status >= 500:
            raise Unverifiable(f"the buyer's history answered {history.status}")
        items = (history.body or {}).get("items", []) if history.status == 200 else []
        match = [item for item in items if item.get("id") == sale_id]
        if not match:
            return "the order is missing from the buyer's history"
        if match[0].get("status") != status or Decimal(str(match[0].get("total"))) != total:
            return (
                f"the history shows {match[0].get('status')} for {match[0].get('total')}, "
                f"expected {status} for {total}"
            )
        return None

    def _check_refused(
        self, shopper: Shopper, cart: dict[str, Any], problem: dict[str, Any], outcome: Outcome
    ) -> None:
        """A refused order is ``failed``, took nothing, and left the cart as it was."""
        sale_id = problem.get("sale_id")
        if not sale_id:
            return self._verify(outcome, "a refused order without its sale_id")
        reply = self._as(shopper, "GET", "sales", f"/sales/{sale_id}")
        if reply.status >= 500:
            raise Unverifiable(f"the refused order could not be read ({reply.status})")
        if reply.status != 200 or reply.body.get("status") != "failed":
            return self._verify(outcome, "the refused order is not 'failed'")
        money = _money_problem(self._sale_ledger(str(sale_id)), None)
        if money is not None:
            return self._verify(outcome, money)
        kept = _quantities(self._cart(shopper))
        if kept != _quantities(cart):
            self._cart_changed(outcome, f"the cart held {kept} after the refusal")
        return None

    # --- the order's life ---------------------------------------------------------------------

    def _after(
        self,
        plan: Plan,
        shopper: Shopper,
        lines: list[Line],
        sale: dict[str, Any],
        outcome: Outcome,
    ) -> None:
        """What becomes of a completed order: cancelled by its buyer, or shipped (and
        delivered) by the admin; then, if kept, maybe reviewed."""
        sale_id, total = str(sale["id"]), Decimal(str(sale["total"]))
        if plan.cancel:
            self._cancel(plan, shopper, sale_id, total, outcome)
        elif plan.ship:
            self._ship(plan, sale_id, outcome)
        if outcome.outcome == "completed" and plan.review and outcome.after != "cancelled":
            line = lines[plan.review_line % len(lines)]
            outcome.review = self._review(plan, shopper, line)

    def _cancel(
        self, plan: Plan, shopper: Shopper, sale_id: str, total: Decimal, outcome: Outcome
    ) -> None:
        """The buyer cancels: the exact total comes back, once (the same request again
        replays the answer and the order still has one debit and one refund)."""
        path = f"/sales/{sale_id}/cancellation"
        headers = {"Idempotency-Key": self.key(plan.attempt, "cancel")}
        reply = self._as(shopper, "POST", "sales", path, headers=headers)
        if reply.status == 503:  # left cancelling (``sale_pending``): recovery refunds it
            outcome.after = "cancelling"
            shopper.balance = None
            return
        if reply.status != 200 or reply.body.get("status") != "cancelled":
            return self._verify(outcome, f"cancellation answered {reply.status} {reply.code or ''}")
        outcome.after = "cancelled"
        if shopper.balance is not None:
            shopper.balance += total
        problem = _money_problem(self._sale_ledger(sale_id), total, refunded=True)
        if problem is None:
            again = self._as(shopper, "POST", "sales", path, headers=headers)
            if again.status != 200 or again.body.get("id") != sale_id:
                problem = f"the cancellation repeated answered {again.status} {again.code or ''}"
            elif _money_problem(self._sale_ledger(sale_id), total, refunded=True) is not None:
                problem = "the cancellation repeated moved money again"
            else:
                problem = self._check_history(shopper, sale_id, "cancelled", total)
        if problem is not None:
            self._verify(outcome, problem)
        return None

    def _ship(self, plan: Plan, sale_id: str, outcome: Outcome) -> None:
        """The admin ships the order with a carrier and tracking number, maybe delivers it."""
        steps: list[tuple[str, dict[str, str] | None, str]] = [
            (
                "shipment",
                {"carrier": plan.carrier, "tracking_number": plan.tracking_number},
                "shipped",
            )
        ]
        if plan.deliver:
            steps.append(("delivery", None, "delivered"))
        for step, body, status in steps:
            reply = self.services.sales.post(
                f"/sales/{sale_id}/{step}",
                json=body,
                token=self.admin.token(),
                headers={"Idempotency-Key": self.key(plan.attempt, step)},
                expect=None,
            )
            answered = reply.body if isinstance(reply.body, dict) else {}
            if reply.status != 200 or answered.get("status") != status:
                return self._verify(
                    outcome, f"{step} answered {reply.status} {reply.code or ''}".rstrip()
                )
            if step == "shipment" and (
                answered.get("carrier"),
                answered.get("tracking_number"),
            ) != (plan.carrier, plan.tracking_number):
                return self._verify(outcome, "the shipment lost its carrier or tracking number")
            outcome.after = status
        return None

    # --- reviews, moderation, restocking ------------------------------------------------------

    def _review(self, plan: Plan, shopper: Shopper, line: Line) -> str:
        """Review a product just bought; returns ``"<rating>*"`` or why there is no review."""
        product, category = line.product, line.category
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
            with self._moderation_lock:
                self._written_reviews.append(int(reply.body["id"]))
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

    def _restock(self, attempt: int, product_id: int, category: str, outcome: Outcome) -> None:
        """The admin restocks a product a shopper found sold out (noted in ``outcome``)."""
        quantity = RESTOCK.get(category, 50)
        reply = self.services.inventory.post(
            f"/products/{product_id}/restock",
            json={"quantity": quantity},
            token=self.admin.token(),
            headers={"Idempotency-Key": self.key(attempt, f"restock:{product_id}")},
            expect=None,
        )
        if reply.status != 200:
            return
        outcome.restocked.append(product_id)
        with self.stats.lock:
            self.stats.restocks += 1

    # --- backing off while the services fail ------------------------------------------------

    def _note_failure(self, outcome: Outcome) -> None:
        """Count attempts in a row that met an outage (5xx, unreachable); reset on anything else."""
        failed = outcome.outcome.startswith(("unreachable:", "error:5")) or outcome.outcome in (
            "pending",
            "unavailable",
            "unverified",
        )
        with self._outcome_lock:
            self._failure_streak = self._failure_streak + 1 if failed else 0

    def _pause_while_failing(self) -> None:
        """Back off (exponential, with jitter) while attempts keep meeting an outage."""
        streak = self._failure_streak
        if streak:
            self.stop_event.wait(min(5.0, 0.1 * 2 ** min(streak, 6)) * random.uniform(0.5, 1.5))  # noqa: S311

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
