"""The replay's plans and answer checks, without services: pure functions of their input."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from seeder.cli import plural
from seeder.client import Login, Services, keyset, paged
from seeder.config import Config
from seeder.replay import Replay, ReplayOptions, attempt
from seeder.replay.checks import basket_difference, cart_problem, money_problem, order_problem
from seeder.replay.notified import expected_types
from seeder.replay.plan import Product, Shopper
from seeder.replay.progress import _progress, _status_line
from seeder.replay.stats import Outcome
from shopkit.events.catalog import event_type
from shopkit.registry import SERVICE_NAMES

CATALOG = [Product(i, f"Product {i}", Decimal("2.50") + i) for i in range(1, 41)]
SHOPPERS = [f"shopper_{i}" for i in range(25)]


def replay(seed: int = 5, catalog: list[Product] = CATALOG, **options: Any) -> Replay:
    """A replay that is never run: nothing here opens a connection."""
    services = Services(Config(customers_url="http://127.0.0.1:9"))
    admin = Login(services.customers, "admin", "unused")
    return Replay(services, admin, ReplayOptions(seed=seed, **options), SHOPPERS, catalog)


def test_the_same_seed_gives_the_same_plans_whatever_the_run() -> None:
    first, second = replay(run_id="a"), replay(run_id="b")
    assert [first.plan(i) for i in range(300)] == [second.plan(i) for i in range(300)]
    assert first.catalog == second.catalog  # the same popularity ranking
    assert first.plan(7) != replay(seed=6).plan(7)


def test_baskets_have_one_to_four_distinct_lines_mostly_small() -> None:
    plans = [replay().plan(i) for i in range(3000)]
    sizes = Counter(len(plan.lines) for plan in plans)
    assert set(sizes) == {1, 2, 3, 4}
    assert sizes[1] > sizes[2] > sizes[3] > sizes[4] > 0
    assert 0.4 < sizes[1] / len(plans) < 0.6
    for plan in plans:
        products = [index for index, _ in plan.lines]
        assert len(set(products)) == len(products)
        assert all(1 <= quantity <= 3 for _, quantity in plan.lines)


def test_a_small_catalogue_caps_the_basket() -> None:
    tiny = replay(catalog=CATALOG[:2])
    assert {len(tiny.plan(i).lines) for i in range(500)} == {1, 2}


def test_the_orders_fates_follow_the_shares() -> None:
    plans = [replay().plan(i) for i in range(4000)]
    cancelled = sum(plan.cancel for plan in plans)
    assert 0.035 < cancelled / len(plans) < 0.065  # about 5 %
    assert not any(plan.cancel and plan.ship for plan in plans)
    assert all(plan.ship for plan in plans if plan.deliver)
    shipped = sum(plan.ship for plan in plans)
    assert 0.4 < shipped / (len(plans) - cancelled) < 0.6
    assert 0.5 < sum(plan.deliver for plan in plans) / shipped < 0.7
    assert all(plan.tracking_number[:2] == plan.carrier[:2].upper() for plan in plans)

    none = [replay(cancel_share=0, ship_share=0).plan(i) for i in range(500)]
    assert not any(plan.cancel or plan.ship or plan.deliver for plan in none)
    every = [replay(cancel_share=1).plan(i) for i in range(200)]
    assert all(plan.cancel and not plan.ship for plan in every)


def order(*lines: tuple[int, int, str], **changes: Any) -> dict[str, Any]:
    items = [
        {
            "product_id": product,
            "quantity": quantity,
            "unit_price": price,
            "line_total": f"{Decimal(price) * quantity:.2f}",
        }
        for product, quantity, price in lines
    ]
    single = items[0] if len(items) == 1 else {"product_id": None, "quantity": None}
    return {
        "id": "s1",
        "status": "completed",
        "items": items,
        "total": f"{sum(Decimal(i['line_total']) for i in items):.2f}",
        "product_id": single["product_id"],
        "quantity": single["quantity"],
        **changes,
    }


def test_a_right_order_passes() -> None:
    assert order_problem(order((1, 2, "3.50"), (2, 1, "1.25"))) is None
    assert order_problem(order((1, 3, "0.10"))) is None
    assert cart_problem(order((1, 2, "3.50"), (2, 1, "1.25"))) is None
    assert basket_difference(order((1, 2, "3.50"), (2, 1, "1.25")), {2: 1, 1: 2}, "cart") is None


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (order((1, 2, "3.50"), (2, 1, "1.25"), status="pending"), "status 'pending'"),
        (order((1, 2, "3.50"), (2, 1, "1.25"), total="8.00"), "!= the sum of its lines 8.25"),
        (order((1, 2, "3.50"), items=[], total="0.00"), "a completed order without lines"),
    ],
)
def test_each_wrong_order_is_named(answer: dict[str, Any], expected: str) -> None:
    assert expected in (order_problem(answer) or "")


@pytest.mark.parametrize(
    "answer",
    [
        order((1, 2, "3.50")),
        order((1, 1, "3.50"), (2, 1, "1.25")),
        order((1, 2, "3.50"), (3, 1, "1")),
    ],
)
def test_an_order_that_is_not_the_basket_is_named(answer: dict[str, Any]) -> None:
    """Another actor on the account can change the cart: the difference is named (and
    counted as a changed cart), while the order is still checked in itself."""
    assert "the order has lines" in (basket_difference(answer, {1: 2, 2: 1}, "order") or "")
    assert order_problem(answer) is None


def test_a_line_total_that_is_not_price_times_quantity_is_named() -> None:
    answer = order((1, 2, "3.50"), (2, 1, "1.25"))
    answer["items"][0]["line_total"] = "7.50"
    answer["total"] = "8.75"
    assert order_problem(answer) == "order line of product 1: 7.50 != 2 x 3.50"


def test_a_one_line_order_keeps_its_top_level_fields() -> None:
    answer = order((4, 2, "1.00"), product_id=None, quantity=None)
    assert order_problem(answer) == (
        "a one-line order without its product and quantity at the top level"
    )


def entry(kind: str, amount: str) -> dict[str, Any]:
    return {"kind": kind, "amount": amount, "sale_id": "s-1"}


def test_an_order_debited_once_by_its_total_passes() -> None:
    total = Decimal("12.50")
    assert money_problem([entry("sale_debit", "-12.50")], total) is None
    both = [entry("sale_debit", "-12.50"), entry("refund_credit", "12.50")]
    assert money_problem(both, total, refunded=True) is None
    assert money_problem([], None) is None  # a refused order: nothing names it


@pytest.mark.parametrize(
    ("entries", "refunded", "expected"),
    [
        (
            [entry("sale_debit", "-12.50"), entry("sale_debit", "-12.50")],
            False,
            "charged 2 times for the order (-12.50, -12.50), expected once -12.50",
        ),
        ([entry("sale_debit", "-25.00")], False, "charged 1 times for the order (-25.00)"),
        ([], False, "charged 0 times for the order (nothing), expected once -12.50"),
        (
            [entry("sale_debit", "-12.50"), entry("refund_credit", "12.50")],
            False,
            "refunded 1 times for the order (12.50), expected nothing",
        ),
        (
            [entry("sale_debit", "-12.50"), *[entry("refund_credit", "12.50")] * 2],
            True,
            "refunded 2 times for the order (12.50, 12.50), expected once 12.50",
        ),
        ([entry("sale_debit", "-12.50")], True, "refunded 0 times"),
    ],
)
def test_a_double_charge_or_a_wrong_refund_is_named(
    entries: list[dict[str, Any]], refunded: bool, expected: str
) -> None:
    assert expected in (money_problem(entries, Decimal("12.50"), refunded=refunded) or "")


def test_a_refused_order_that_moved_money_is_named() -> None:
    assert money_problem([entry("sale_debit", "-3.00")], None) == (
        "a refused order moved money: -3.00"
    )


def test_plural_agrees_with_the_count() -> None:
    assert [plural(n, "violation") for n in (0, 1, 2, 1200)] == [
        "0 violations",
        "1 violation",
        "2 violations",
        "1,200 violations",
    ]


def test_the_live_count_shows_x_of_n_and_an_eta() -> None:
    counted = replay(purchases=500)
    counted.stats.started -= 10  # ten seconds in, 100 attempts done: 10/s
    counted.stats.attempts = 100
    assert _progress(counted, 100) == ("100/500", "0:00:40")
    timed = replay(duration_s=60.0)
    timed.stats.started -= 15
    count, eta = _progress(timed, 7)
    assert count == "7" and eta in ("0:00:45", "0:00:44")
    counted.stop()  # once stopping (or finished) there is no ETA
    assert _progress(counted, 100) == ("100/500", None)


def test_the_status_line_counts_of_n_and_keeps_the_storefronts_format() -> None:
    from storefront.jobs import _REPLAY_STATUS

    counted = replay(purchases=500)
    counted.stats.started -= 10
    counted.stats.attempts = 1234
    line = _status_line(counted)
    assert line.startswith("replay: 1,234 attempts of 500, ")
    assert "purchase latency p50" in line and line.endswith(", ETA 0:00:00")
    match = _REPLAY_STATUS.search(line)
    assert match is not None and match.group(1) == "1,234"


def test_the_audit_table_agrees_in_number_and_has_no_empty_rows() -> None:
    from rich.console import Console

    from seeder.audit import AuditReport, Check
    from seeder.cli import print_audit

    report = AuditReport(
        checks=[
            Check("one debit per paid order", 10, ["sale s-1: charged twice"]),
            Check("no negative stock", 4, ["product 3: -1", "product 4: -2"]),
            Check("no negative balance", 7),
        ]
    )
    console = Console(record=True, width=100, color_system=None)
    print_audit(report, console)
    text = console.export_text()
    assert "1 violation " in text and "2 violations" in text and "1 violations" not in text
    assert "Audit FAILED: 3 violations in 2 checks." in text
    rows = [line for line in text.splitlines() if line.strip()]
    empty = [line for line in rows if line.strip().strip("│┃|").strip() == ""]
    assert not empty, text
    detail = text[text.index("violations: one debit per paid order") :]
    assert detail.splitlines()[1].startswith("┌") and "sale s-1" in detail.splitlines()[2]


def test_a_delivered_orders_notifications_are_its_catalogued_order_events() -> None:
    outcome = Outcome(1, "ada", [[7, 1]], "completed", after="delivered", sale_id="s-1")
    types = expected_types(outcome)
    assert types == {
        "shop.order.completed.v1",
        "shop.order.shipped.v1",
        "shop.order.delivered.v1",
    }
    assert {event_type(name).aggregate for name in types} == {"order"}
    assert expected_types(Outcome(2, "ada", [[7, 1]], "insufficient_funds")) == frozenset()


def test_the_configuration_has_one_url_per_registered_service() -> None:
    urls = {f.name for f in dataclasses.fields(Config) if f.name.endswith("_url")}
    assert urls == {f"{name}_url" for name in SERVICE_NAMES}
    config = Config.from_env(**{f"{name}_url": f"http://{name}:1/" for name in SERVICE_NAMES})
    assert config.notifications_url == "http://notifications:1"  # the trailing slash dropped


@pytest.fixture
def fake_reviews() -> Iterator[tuple[str, list[tuple[float, str]], list[Response]]]:
    """The customers and reviews services faked at their HTTP boundary: a login, and
    ``POST /reviews`` answering the queued responses (then ``not_a_buyer``); the URL, the
    reviews calls (when, and the answer's code) and the queue."""
    calls: list[tuple[float, str]] = []
    queue: list[Response] = []

    def not_a_buyer() -> Response:
        return Response('{"code": "not_a_buyer"}', 403, mimetype="application/problem+json")

    @Request.application
    def app(request: Request) -> Response:
        if request.path == "/auth/login":
            return Response('{"access_token": "t", "expires_in": 900}', mimetype="application/json")
        answer = queue.pop(0) if queue else not_a_buyer()
        calls.append((time.monotonic(), str(json.loads(answer.get_data()).get("code"))))
        return answer

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}", calls, queue
    server.shutdown()
    thread.join(5)


def test_a_review_waits_for_its_purchase_by_backing_off_and_gives_up_on_a_stack_without_events(
    fake_reviews: tuple[str, list[tuple[float, str]], list[Response]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, calls, queue = fake_reviews
    monkeypatch.setattr(attempt, "PURCHASE_KNOWN_WITHIN_S", 0.6)
    services = Services(Config(customers_url=url, reviews_url=url))
    run = Replay(services, Login(services.customers, "admin", "x"), ReplayOptions(seed=1),
                 SHOPPERS, CATALOG)  # fmt: skip
    shopper = Shopper("ada", Login(services.customers, "ada", "x"))
    review = {"product_id": 1, "rating": 5, "comment": "Fine."}

    def submit() -> str | None:
        first = shopper.login.call(services.reviews, "POST", "/reviews", json=review)
        return run._until_purchase_known(shopper, review, first).code

    # Pending: asked again after its Retry-After, not at once; then known.
    pending = Response('{"code": "purchase_pending"}', 409, {"Retry-After": "1"},
                       mimetype="application/problem+json")  # fmt: skip
    queue += [pending, Response('{"id": 1}', 201, mimetype="application/json")]
    monkeypatch.setattr(attempt, "PURCHASE_KNOWN_WITHIN_S", 5.0)
    assert submit() is None  # 201
    assert calls[1][0] - calls[0][0] >= 0.9
    monkeypatch.setattr(attempt, "PURCHASE_KNOWN_WITHIN_S", 0.6)
    # A stack without events never learns of a purchase: a few reviews wait in vain...
    for _ in range(attempt.UNKNOWN_PURCHASES_GIVE_UP):
        calls.clear()
        started = time.monotonic()
        assert submit() == "not_a_buyer"
        assert time.monotonic() - started >= 0.6
        assert 2 <= len(calls) <= 4  # backing off, not every 50 ms
    # ... and then the run no longer waits on not_a_buyer.
    calls.clear()
    assert submit() == "not_a_buyer" and len(calls) == 1


def test_the_paging_helpers_read_every_page_and_no_more_than_asked() -> None:
    asked: list[dict[str, Any]] = []

    def by_key(query: dict[str, Any]) -> dict[str, Any]:
        asked.append(dict(query))
        after = int(query.get("after", 0))
        return {"items": [{"id": after + 1}], "next_after": str(after + 1) if after < 2 else None}

    assert [i["id"] for i in keyset(by_key, {"group": "g"}, limit=1)] == [1, 2, 3]
    assert asked == [{"group": "g", "limit": 1}, {"group": "g", "limit": 1, "after": "1"},
                     {"group": "g", "limit": 1, "after": "2"}]  # fmt: skip
    asked.clear()

    def by_number(query: dict[str, Any]) -> dict[str, Any]:
        asked.append(dict(query))
        return {"items": [{"page": query["page"]}] * 2, "total": 5}

    assert len(list(paged(by_number, {"q": 1}, page_size=2))) == 6  # three pages of 5
    assert [q["page"] for q in asked] == [1, 2, 3]
    asked.clear()
    next(paged(by_number, page_size=2))
    assert len(asked) == 1  # read lazily: a reader that stops asks for no more pages
