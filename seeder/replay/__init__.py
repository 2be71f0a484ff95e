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

The package, one job per module:

* :mod:`seeder.replay.plan`: what each attempt will do, drawn from the seed;
* :mod:`seeder.replay.attempt`: one attempt, a shopper's visit and what follows;
* :mod:`seeder.replay.checks`: the result checks above;
* :mod:`seeder.replay.stats`: each attempt's outcome and the run's live counters;
* :mod:`seeder.replay.runner`: the run, dispatching attempts and moderating;
* :mod:`seeder.replay.progress`: the live progress display and the final table.
"""

from __future__ import annotations

from seeder.replay.plan import CANCEL_SHARE, DELIVER_SHARE, REVIEW_SHARE, SHIP_SHARE, ReplayOptions
from seeder.replay.runner import Replay, discover_customers, load_catalog
from seeder.replay.stats import CART_CHANGED, Outcome, Stats

__all__ = [
    "CANCEL_SHARE",
    "CART_CHANGED",
    "DELIVER_SHARE",
    "REVIEW_SHARE",
    "SHIP_SHARE",
    "Outcome",
    "Replay",
    "ReplayOptions",
    "Stats",
    "discover_customers",
    "load_catalog",
]
