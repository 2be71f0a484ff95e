"""One attempt of a replay: a simulated shopper fills a cart, checks out, and what follows."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from decimal import ROUND_CEILING, Decimal
from typing import Any

from seeder.client import (
    ApiError,
    Login,
    LoginFailed,
    Reply,
    Services,
    ServiceUnreachable,
    shopper_action,
)
from seeder.data import (
    review_text,
    seeded,
)
from seeder.replay.checks import (
    Unverifiable,
    basket_difference,
    basket_of,
    cart_problem,
    money_problem,
    order_problem,
    quantities_of,
)
from seeder.replay.notified import NotificationTracker
from seeder.replay.plan import (
    RESTOCK,
    SALE_RETRIES,
    Line,
    Plan,
    Product,
    ReplayOptions,
    Shopper,
    draw_plan,
)
from seeder.replay.stats import CART_CHANGED, SETTLED_OUTCOMES, Outcome, Stats
from shopkit.idempotency import REPLAYED_HEADER

#: Reviews' answers to a buyer whose payment its order events have not brought yet.
NOT_KNOWN_YET = ("purchase_pending", "not_a_buyer")
#: How long a review waits for reviews to learn of a purchase just paid (it takes well
#: under a second with the broker up: docs/events.rst).
PURCHASE_KNOWN_WITHIN_S = 5.0
#: Reviews in a row whose purchase stayed unknown for all that wait, after which the run
#: stops waiting on ``not_a_buyer`` (a stack without events never learns of a purchase).
UNKNOWN_PURCHASES_GIVE_UP = 3
#: Where an order can be after ``completed``: refused as an ``invalid_transition`` by a
#: cancellation or a shipment because another actor on the account moved it there first.
MOVED_ON = frozenset({"cancelling", "cancelled", "shipped", "delivered"})


def _backoff(retry: int, reply: Reply | None) -> float:
    """Seconds before retry ``retry`` of a purchase: exponential with jitter, and at least
    the answer's ``Retry-After`` (capped at 2 s)."""
    pause = 0.25 * 2**retry * random.uniform(0.5, 1.5)  # noqa: S311
    retry_after = (reply.headers or {}).get("Retry-After", "") if reply is not None else ""
    if retry_after.isdigit():
        pause = max(pause, min(2.0, float(retry_after)))
    return pause


class Attempts:
    """One attempt after another: a shopper's visit, checked, and what follows the order.

    The state (services, options, ranked shoppers and catalogue) is set up by
    :class:`seeder.replay.runner.Replay`, which runs the attempts.
    """

    services: Services
    admin: Login
    options: ReplayOptions
    reviews_enabled: bool
    stats: Stats
    outcomes: list[Outcome]
    notified: NotificationTracker
    stop_event: threading.Event
    catalog: list[Product]
    product_weights: list[float]
    shoppers: list[Shopper]
    shopper_weights: list[float]
    _written_reviews: deque[int]
    _moderation_lock: threading.Lock
    _outcome_lock: threading.Lock
    _failure_streak: int
    #: Reviews in a row whose purchase never became known (see :meth:`_review`).
    _unknown_purchases: int

    # --- planning -----------------------------------------------------------------------------

    def plan(self, attempt: int) -> Plan:
        """Attempt ``attempt``: a pure function of the seed and ``attempt``."""
        return draw_plan(
            self.options, attempt, self.shopper_weights, self.product_weights, len(self.catalog)
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
        self.notified.note(shopper, outcome)
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
        problem = cart_problem(cart)
        if problem is not None:
            self._verify(outcome, problem)
            return None
        changed = basket_difference(cart, basket_of(lines), "cart")
        if changed is not None:  # someone else shops as this customer: leave the cart to them
            outcome.outcome = CART_CHANGED
            self._cart_changed(outcome, changed)
            return None
        cost = Decimal(str(cart["total"]))
        if shopper.balance < cost and plan.top_up_when_short:
            outcome.topped_up = self._top_up(plan, shopper, cost - shopper.balance)
        reply, latency, tries = self._checkout(plan, shopper)
        if tries == 1 and reply.status == 201 and _replayed(reply):
            # A new key answered with an order at once: an earlier checkout of this cart
            # (another actor on the account) placed it; sales answers with it rather than
            # place a second order. Its life is that actor's to live.
            outcome.outcome = CART_CHANGED
            shopper.balance = None
            self._cart_changed(outcome, f"an earlier checkout's order {reply.body.get('id')}")
            return latency
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

    def _checkout(self, plan: Plan, shopper: Shopper) -> tuple[Reply, float, int]:
        """``POST /cart/checkout``, retried with the same key while the answer is not final;
        the final answer, the time taken and how many requests were sent."""
        started = time.perf_counter()
        reply: Reply | None = None
        unreachable: ServiceUnreachable | None = None
        tries = 0
        for retry in range(SALE_RETRIES + 1):
            # Back off before a retry; once the replay is stopping, do not retry at all.
            if retry and self.stop_event.wait(_backoff(retry, reply)):
                break
            tries += 1
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
        return reply, time.perf_counter() - started, tries

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
        problem = order_problem(sale)
        if problem is None:
            problem = self._check_history(shopper, str(sale["id"]), "completed", total)
        if problem is None:
            problem = money_problem(self._sale_ledger(str(sale["id"])), total)
        if problem is not None:
            return self._verify(outcome, problem)
        basket = basket_of(lines)
        changed = basket_difference(sale, basket, "order")
        if changed is not None:
            self._cart_changed(outcome, changed)
        left = set(quantities_of(self._cart(shopper))) & set(quantities_of(sale))
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
        money = money_problem(self._sale_ledger(str(sale_id)), None)
        if money is not None:
            return self._verify(outcome, money)
        kept = quantities_of(self._cart(shopper))
        if kept != quantities_of(cart):
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
        if reply.status == 409 and self._moved_on(sale_id, "cancellation", outcome):
            shopper.balance = None
            return None
        if reply.status != 200 or reply.body.get("status") != "cancelled":
            return self._verify(outcome, f"cancellation answered {reply.status} {reply.code or ''}")
        outcome.after = "cancelled"
        if shopper.balance is not None:
            shopper.balance += total
        problem = money_problem(self._sale_ledger(sale_id), total, refunded=True)
        if problem is None:
            again = self._as(shopper, "POST", "sales", path, headers=headers)
            if again.status != 200 or again.body.get("id") != sale_id:
                problem = f"the cancellation repeated answered {again.status} {again.code or ''}"
            elif money_problem(self._sale_ledger(sale_id), total, refunded=True) is not None:
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
            if reply.status == 409 and self._moved_on(sale_id, step, outcome):
                return None
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

    def _moved_on(self, sale_id: str, step: str, outcome: Outcome) -> bool:
        """After ``step`` was refused with 409 ``invalid_transition``: whether another actor
        on the account had already moved the order on (two replays of one seed share their
        shoppers, and a checkout retried while the other's was pending answers with that
        order). Counted as a change by another actor, not a failed check; an order still
        ``completed`` is a real refusal, which the caller reports."""
        reply = self.services.sales.get(f"/sales/{sale_id}", token=self.admin.token(), expect=None)
        status = reply.body.get("status") if isinstance(reply.body, dict) else None
        if reply.status != 200 or status not in MOVED_ON:
            return False
        outcome.after = str(status)
        self._cart_changed(outcome, f"the order was already {status} at its {step}")
        return True

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
        review = {"product_id": product.id, "rating": plan.rating, "comment": comment}
        try:
            reply = self._as(shopper, "POST", "reviews", "/reviews", json=review)
            reply = self._until_purchase_known(shopper, review, reply)
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
        if reply.code == "already_reviewed":
            shopper.reviewed.add(product.id)
        self.stats_count("reviews", f"skipped: {reason}")
        return f"skipped:{reason}"

    def _until_purchase_known(
        self, shopper: Shopper, review: dict[str, Any], reply: Reply
    ) -> Reply:
        """Submit ``review`` again while reviews has not learned of the purchase yet (it does
        from order events, a moment after the payment): backing off, after ``Retry-After``,
        for up to :data:`PURCHASE_KNOWN_WITHIN_S`. Once that many reviews in a row
        (:data:`UNKNOWN_PURCHASES_GIVE_UP`) waited in vain as ``not_a_buyer``, the run no
        longer waits on that answer (the stack has no events); ``purchase_pending`` it does."""
        waited_until = time.monotonic() + PURCHASE_KNOWN_WITHIN_S
        retry = 0
        while reply.code in NOT_KNOWN_YET:
            if reply.code == "not_a_buyer" and self._unknown_purchases >= UNKNOWN_PURCHASES_GIVE_UP:
                return reply
            remaining = waited_until - time.monotonic()
            if remaining <= 0 or self.stop_event.wait(min(remaining, _backoff(retry, reply))):
                break
            retry += 1
            reply = self._as(shopper, "POST", "reviews", "/reviews", json=review)
        with self._outcome_lock:
            if reply.code == "not_a_buyer":
                self._unknown_purchases += 1
            elif reply.status == 201:  # known: reviews learns purchases
                self._unknown_purchases = 0
        return reply

    def stats_count(self, counter: str, key: str, amount: int = 1) -> None:
        """Add to one of the named counters of :attr:`stats`."""
        with self.stats.lock:
            getattr(self.stats, counter)[key] += amount

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


def _replayed(reply: Reply) -> bool:
    """Whether sales answered with an order it had already placed (``Idempotent-Replayed``)."""
    wanted = REPLAYED_HEADER.lower()
    return any(k.lower() == wanted and v == "true" for k, v in reply.headers.items())
