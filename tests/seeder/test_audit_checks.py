"""The audit's checks over hand-made data (no services): each state, each violation caught."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from seeder.audit import Auditor, AuditReport

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OLD = (NOW - timedelta(minutes=10)).isoformat()
RECENT = (NOW - timedelta(seconds=5)).isoformat()
JUST_NOW = (NOW + timedelta(milliseconds=300)).isoformat()
BUYER = 7
#: Two lines: 2 x 3.50 of product 1 and 1 x 3.00 of product 2, total 10.00.
LINES = ((1, 2, "3.50"), (2, 1, "3.00"))

Record = dict[str, Any]


def sale(status: str, lines: tuple[tuple[int, int, str], ...] = LINES, **extra: Any) -> Record:
    """An order as ``GET /sales`` lists it."""
    items = [
        {
            "product_id": product,
            "product_name": f"Product {product}",
            "quantity": quantity,
            "unit_price": price,
            "line_total": f"{Decimal(price) * quantity:.2f}",
        }
        for product, quantity, price in lines
    ]
    total = sum((Decimal(item["line_total"]) for item in items), Decimal(0))
    single = items[0] if len(items) == 1 else {}
    return {
        "id": str(uuid.uuid4()),
        "status": status,
        "customer_id": BUYER,
        "items": items,
        "total": f"{total:.2f}" if status != "failed" else None,
        "product_id": single.get("product_id"),
        "quantity": single.get("quantity"),
        "unit_price": single.get("unit_price"),
        "history": [{"status": status, "at": OLD}],
        "created_at": OLD,
        "updated_at": OLD,
        "completed_at": OLD if status not in ("pending", "failed") else None,
        **extra,
    }


def debit(order: Record, amount: str | None = None, customer: int = BUYER) -> Record:
    return {
        "id": 1,
        "kind": "sale_debit",
        "amount": f"-{amount or order['total']}",
        "customer_id": customer,
        "sale_id": order["id"],
    }


def refund(order: Record, amount: str | None = None, customer: int = BUYER) -> Record:
    return {**debit(order, customer=customer), "kind": "refund_credit", "id": 2} | {
        "amount": amount or order["total"]
    }


def reservation(order: Record, status: str = "reserved", **changes: Any) -> Record:
    """The order's reservation (its lines unless ``items`` is given)."""
    items = [
        {k: item[k] for k in ("product_id", "quantity", "unit_price")} for item in order["items"]
    ]
    return {"sale_id": order["id"], "status": status, "items": items, **changes}


CONSISTENT = {"wallets_checked": 1, "total_balance": "90.00", "mismatches": [], "ok": True}


def audit(
    sales: list[Record],
    ledger: list[Record],
    reservations: list[Record],
    consistency: dict[str, Any] = CONSISTENT,
    products: list[Record] | None = None,
) -> AuditReport:
    auditor = Auditor(None, None, pending_after_s=60)  # type: ignore[arg-type]
    return auditor.check(
        NOW,
        reservations,
        ledger,
        {s["id"]: s for s in sales},
        consistency,
        products or [{"id": 1, "name": "Widget", "stock": 3}],
    )


def failing(report: AuditReport) -> dict[str, list[str]]:
    return {c.name: c.violations for c in report.checks if not c.ok}


def settled_shop() -> tuple[list[Record], list[Record], list[Record]]:
    """One order in each settled state, all consistent: sales, ledger, reservations."""
    completed, shipped, delivered = sale("completed"), sale("shipped"), sale("delivered")
    shipped.update(carrier="DHL", tracking_number="1Z", shipped_at=OLD)
    cancelled = sale("cancelled", cancelled_at=OLD)
    refused, released = sale("failed"), sale("failed")
    one_line = sale("completed", ((3, 4, "2.25"),))
    paid = (completed, shipped, delivered, one_line)
    ledger = [*(debit(o) for o in paid), debit(cancelled), refund(cancelled)]
    reservations = [
        *(reservation(o) for o in paid),
        reservation(cancelled, "returned"),
        reservation(released, "released"),
    ]
    return [*paid, cancelled, refused, released], ledger, reservations


def test_a_consistent_shop_in_every_settled_state_passes() -> None:
    sales, ledger, reservations = settled_shop()
    report = audit(sales, ledger, reservations)
    assert report.ok, failing(report)
    assert report.sales == {
        "completed": 2,
        "shipped": 1,
        "delivered": 1,
        "cancelled": 1,
        "failed": 2,
    }
    # Three 10.00 orders and one of 4 x 2.25; the cancelled order's debit is refunded.
    assert report.money_in_sales == report.money_debited == Decimal("39.00")
    assert report.money_refunded == Decimal("10.00")
    assert report.units_sold == report.units_reserved == 3 * 3 + 4
    assert report.in_flight == 0
    checked = {c.name: c.checked for c in report.checks}
    assert checked[next(n for n in checked if n.startswith("every completed, shipped"))] == 4
    assert checked["every cancelled order: one debit and one refund of its total"] == 1
    assert checked["every failed order: no net debit"] == 2


def test_a_one_line_reservation_in_the_older_shape_matches_its_order() -> None:
    order = sale("completed", ((5, 2, "4.00"),))
    held = {"sale_id": order["id"], "status": "reserved", "product_id": 5, "quantity": 2}
    report = audit([order], [debit(order)], [held])
    assert report.ok, failing(report)
    assert report.units_reserved == 2


PAID_CHECK = "every completed, shipped or delivered order: exactly one debit"
PAID_STOCK = "every completed, shipped or delivered order: its stock reserved once"
CANCELLED_MONEY = "every cancelled order: one debit and one refund"
CANCELLED_STOCK = "every cancelled order: its stock returned"
FAILED_MONEY = "every failed order: no net debit"
FAILED_STOCK = "every failed order: stock released"
TOTALS = "every paid or cancelled order: total = sum"
MONEY = "money in paid orders equals money debited"
UNITS = "units in paid orders equal units held"

Shop = tuple[list[Record], list[Record], list[Record]]


def _order(shop: Shop, status: str) -> Record:
    return next(s for s in shop[0] if s["status"] == status)


def _replace(items: list[Record], old: Record, new: Record | None) -> None:
    index = items.index(old)
    if new is None:
        items.pop(index)
    else:
        items[index] = new


def _reservation_of(shop: Shop, order: Record) -> Record:
    return next(r for r in shop[2] if r["sale_id"] == order["id"])


def _debit_of(shop: Shop, order: Record, kind: str = "sale_debit") -> Record:
    return next(e for e in shop[1] if e["sale_id"] == order["id"] and e["kind"] == kind)


def break_paid(status: str, how: str) -> Callable[[Shop], None]:
    """Break the consistent shop's ``status`` order (a paid one) in one way."""

    def apply(shop: Shop) -> None:
        order = _order(shop, status)
        held = _reservation_of(shop, order)
        if how == "no debit":
            _replace(shop[1], _debit_of(shop, order), None)
        elif how == "two debits":
            shop[1].append(debit(order))
        elif how == "wrong amount":
            _replace(shop[1], _debit_of(shop, order), debit(order, "9.00"))
        elif how == "another wallet":
            _replace(shop[1], _debit_of(shop, order), debit(order, customer=8))
        elif how == "refunded":
            shop[1].append(refund(order))
        elif how == "no reservation":
            _replace(shop[2], held, None)
        elif how == "released":
            _replace(shop[2], held, reservation(order, "released"))
        elif how == "returned":
            _replace(shop[2], held, reservation(order, "returned"))
        elif how == "a line missing":
            _replace(shop[2], held, {**held, "items": held["items"][:1]})
        elif how == "another quantity":
            items = [{**held["items"][0], "quantity": 3}, *held["items"][1:]]
            _replace(shop[2], held, {**held, "items": items})
        elif how == "another price":
            items = [{**held["items"][0], "unit_price": "3.40"}, *held["items"][1:]]
            _replace(shop[2], held, {**held, "items": items})
        elif how == "bad line total":
            order["items"][0]["line_total"] = "7.50"
        elif how == "bad total":
            order["total"] = "11.00"
            _replace(shop[1], _debit_of(shop, order), debit(order))

    return apply


PAID_CASES = [
    ("no debit", {PAID_CHECK, MONEY}),
    ("two debits", {PAID_CHECK, MONEY}),
    ("wrong amount", {PAID_CHECK, MONEY}),
    ("another wallet", {PAID_CHECK}),
    ("refunded", {PAID_CHECK, MONEY}),
    ("no reservation", {PAID_STOCK, UNITS}),
    ("released", {PAID_STOCK, UNITS}),
    ("returned", {PAID_STOCK, UNITS}),
    ("a line missing", {PAID_STOCK, UNITS}),
    ("another quantity", {PAID_STOCK, UNITS}),
    ("another price", {PAID_STOCK}),
    ("bad line total", {TOTALS}),
    ("bad total", {TOTALS}),
]


def _assert_exactly(report: AuditReport, expected: set[str]) -> None:
    assert not report.ok
    broken = failing(report)
    for prefix in expected:
        assert any(name.startswith(prefix) for name in broken), (prefix, broken)
    assert len(broken) == len(expected), broken


@pytest.mark.parametrize("status", ["completed", "shipped", "delivered"])
@pytest.mark.parametrize(("how", "expected"), PAID_CASES, ids=[c[0] for c in PAID_CASES])
def test_each_violation_of_a_paid_order_is_caught(
    status: str, how: str, expected: set[str]
) -> None:
    shop = settled_shop()
    break_paid(status, how)(shop)
    report = audit(*shop)
    _assert_exactly(report, expected)
    # The order's own check names it (the shop-wide sums cannot).
    order = _order(shop, status)
    named = [
        message
        for name, messages in failing(report).items()
        if not name.startswith((MONEY, UNITS))
        for message in messages
    ]
    assert named and all(f"sale {order['id']}: " in message for message in named), named


def _break_cancelled(how: str, shop: Shop) -> None:
    order = _order(shop, "cancelled")
    held = _reservation_of(shop, order)
    if how == "no refund":
        _replace(shop[1], _debit_of(shop, order, "refund_credit"), None)
    elif how == "two refunds":
        shop[1].append(refund(order))
    elif how == "refund of another amount":
        _replace(shop[1], _debit_of(shop, order, "refund_credit"), refund(order, "9.00"))
    elif how == "refund to another wallet":
        _replace(shop[1], _debit_of(shop, order, "refund_credit"), refund(order, customer=8))
    elif how == "no debit":
        _replace(shop[1], _debit_of(shop, order), None)
    elif how == "stock kept":
        _replace(shop[2], held, reservation(order, "reserved"))
    elif how == "released instead":
        _replace(shop[2], held, reservation(order, "released"))
    elif how == "no reservation":
        _replace(shop[2], held, None)
    elif how == "returned another quantity":
        _replace(shop[2], held, {**held, "items": [{**held["items"][0], "quantity": 1}]})


CANCELLED_CASES = [
    ("no refund", {CANCELLED_MONEY, MONEY}),
    ("two refunds", {CANCELLED_MONEY, MONEY}),
    ("refund of another amount", {CANCELLED_MONEY, MONEY}),
    ("refund to another wallet", {CANCELLED_MONEY}),
    ("no debit", {CANCELLED_MONEY, MONEY}),
    ("stock kept", {CANCELLED_STOCK, UNITS}),
    ("released instead", {CANCELLED_STOCK}),
    ("no reservation", {CANCELLED_STOCK}),
    ("returned another quantity", {CANCELLED_STOCK}),
]


@pytest.mark.parametrize(("how", "expected"), CANCELLED_CASES, ids=[c[0] for c in CANCELLED_CASES])
def test_each_violation_of_a_cancelled_order_is_caught(how: str, expected: set[str]) -> None:
    shop = settled_shop()
    _break_cancelled(how, shop)
    report = audit(*shop)
    _assert_exactly(report, expected)


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("money kept", {FAILED_MONEY, MONEY}),
        ("debited and refunded", set()),
        ("stock kept", {FAILED_STOCK, UNITS}),
        ("stock returned", {FAILED_STOCK}),
        ("stock released", set()),
    ],
)
def test_a_failed_order_keeps_nothing(how: str, expected: set[str]) -> None:
    shop = settled_shop()
    order = next(s for s in shop[0] if s["status"] == "failed")
    charged = {**order, "total": "10.00"}
    if how == "money kept":
        shop[1].append(debit(charged))
    elif how == "debited and refunded":
        shop[1].extend([debit(charged), refund(charged)])
    else:
        shop[2].append(reservation(order, how.split()[1].replace("kept", "reserved")))
    report = audit(*shop)
    if expected:
        _assert_exactly(report, expected)
    else:
        assert report.ok, failing(report)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("orphan debit", "every sale debit and refund belongs to a sale"),
        ("orphan refund", "every sale debit and refund belongs to a sale"),
        ("orphan reservation", "every reservation belongs to a sale"),
        ("wallet mismatch", "every wallet balance equals the sum of its ledger"),
        ("negative balance", "no negative balance"),
        ("inconsistent wallets", "every wallet balance equals the sum of its ledger"),
        ("negative stock", "no negative stock"),
        ("unknown status", "every order has a known status"),
    ],
)
def test_each_shop_wide_violation_is_caught(case: str, expected: str) -> None:
    sales, ledger, reservations = settled_shop()
    consistency, products = dict(CONSISTENT), None
    stranger = sale("completed")
    if case == "orphan debit":
        ledger.append(debit(stranger))
    elif case == "orphan refund":
        ledger.append(refund(stranger))
    elif case == "orphan reservation":
        reservations.append(reservation(stranger))
    elif case == "wallet mismatch":
        consistency.update(
            ok=False, mismatches=[{"username": "x", "balance": "5.00", "ledger_sum": "4.00"}]
        )
    elif case == "negative balance":
        consistency.update(
            ok=False, mismatches=[{"username": "x", "balance": "-1.00", "ledger_sum": "-1.00"}]
        )
    elif case == "inconsistent wallets":
        consistency.update(ok=False)
    elif case == "negative stock":
        products = [{"id": 1, "name": "Widget", "stock": -1}]
    elif case == "unknown status":
        sales.append(sale("lost"))
    report = audit(sales, ledger, reservations, consistency, products)
    assert list(failing(report)) == [expected], failing(report)


def test_stale_pending_and_cancelling_orders_are_violations() -> None:
    sales, ledger, reservations = settled_shop()
    pending = sale("pending")
    # Recovery bumps updated_at on every attempt: the age comes from created_at...
    pending["updated_at"] = RECENT
    # ... and, for a cancelling order, from when it started cancelling.
    cancelling = sale("cancelling", updated_at=RECENT)
    cancelling["history"] = [
        {"status": "completed", "at": OLD},
        {"status": "cancelling", "at": OLD},
    ]
    ledger += [debit(cancelling), refund(cancelling)]  # refunded, stock not yet returned
    reservations.append(reservation(cancelling))
    report = audit([*sales, pending, cancelling], ledger, reservations)
    stale = failing(report)
    assert list(stale) == ["no order pending or cancelling for more than 60 s"]
    assert stale["no order pending or cancelling for more than 60 s"] == [
        f"sale {pending['id']} pending since {OLD}",
        f"sale {cancelling['id']} cancelling since {OLD}",
    ]
    assert report.in_flight == 0


def test_young_pending_and_cancelling_orders_are_in_flight() -> None:
    sales, ledger, reservations = settled_shop()
    pending = sale("pending", created_at=RECENT, updated_at=RECENT)
    reservations.append(reservation(pending))  # reserved, not yet debited
    # Completed long ago, cancelling for 5 s: young, whatever its creation date.
    cancelling = sale("cancelling", updated_at=RECENT)
    cancelling["history"] = [
        {"status": "completed", "at": OLD},
        {"status": "cancelling", "at": RECENT},
    ]
    ledger.append(debit(cancelling))
    reservations.append(reservation(cancelling))
    report = audit([*sales, pending, cancelling], ledger, reservations)
    assert report.ok, failing(report)
    assert report.in_flight == 2
    assert report.sales["pending"] == report.sales["cancelling"] == 1
    # Their money is not judged yet: paid orders' money still equals the net debits.
    assert report.money_in_sales == report.money_debited == Decimal("39.00")


def test_orders_that_changed_during_the_audit_are_in_flight_not_violations() -> None:
    sales, ledger, reservations = settled_shop()
    # Completed after the ledger was read: its debit is not in what was read first.
    racing = sale("completed", updated_at=JUST_NOW)
    reservations.append(reservation(racing))
    # Cancelled after the reservations and the ledger were read: still reserved, no refund.
    cancelled = sale("cancelled", updated_at=JUST_NOW)
    ledger.append(debit(cancelled))
    reservations.append(reservation(cancelled))
    report = audit([*sales, racing, cancelled], ledger, reservations)
    assert report.ok, failing(report)
    assert report.in_flight == 2


def test_a_violation_updated_long_before_the_audit_is_not_in_flight() -> None:
    sales, ledger, reservations = settled_shop()
    cancelled = sale("cancelled", updated_at=(NOW - timedelta(seconds=2)).isoformat())
    ledger.append(debit(cancelled))
    reservations.append(reservation(cancelled, "returned"))
    report = audit([*sales, cancelled], ledger, reservations)
    assert failing(report)[f"{CANCELLED_MONEY} of its total"] == [
        f"sale {cancelled['id']}: 0 refunds (cancelled)"
    ]
    assert report.in_flight == 0
