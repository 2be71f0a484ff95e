"""What each attempt of a replay will do, drawn up front from the seed: the plan."""

from __future__ import annotations

import bisect
import itertools
import random
import threading
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from seeder.client import (
    Login,
)
from seeder.data import RATING_WEIGHTS, RATINGS, seeded, stream_seed

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
    #: Seconds after the run within which each order's notifications must have arrived.
    notification_bound_s: float = 30.0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


def zipf_cumulative(count: int, exponent: float) -> list[float]:
    """Cumulative Zipf weights of ``count`` ranks: rank *r* weighs ``1 / r**exponent``."""
    return list(itertools.accumulate(1.0 / (rank + 1) ** exponent for rank in range(count)))


def pick(rng: random.Random, cumulative: list[float]) -> int:
    """A rank drawn with the weights ``cumulative`` (from :func:`zipf_cumulative`)."""
    return min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)


def draw_plan(
    options: ReplayOptions,
    attempt: int,
    shopper_weights: list[float],
    product_weights: list[float],
    catalog_size: int,
) -> Plan:
    """Attempt ``attempt``'s plan: a pure function of the seed and ``attempt``.

    ``shopper_weights`` and ``product_weights`` are the cumulative popularity of the
    ranked shoppers and catalogue (:func:`zipf_cumulative`).
    """
    rng = seeded(stream_seed(options.seed, f"attempt:{attempt}"))
    shopper = pick(rng, shopper_weights)
    count = min(rng.choices(LINE_COUNTS, LINE_COUNT_WEIGHTS)[0], catalog_size)
    products: list[int] = []
    while len(products) < count:  # distinct products, each by popularity
        product = pick(rng, product_weights)
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
