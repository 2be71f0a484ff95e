"""``audit``: the cross-service invariants of the sale, read through admin endpoints.

The invariants are those of docs/architecture.rst, "The sale: one saga, exactly once".

The seeder never reads a service's database. It reads, page by page:

* inventory ``GET /internal/reservations`` (admins may read them, lines included)
  and ``GET /products``;
* customers ``GET /ledger?sales_only=true`` (sale debits and refunds across
  wallets) and ``GET /wallets/consistency`` (balance against ledger, per wallet);
* sales ``GET /sales`` (every order, with status, lines, total, history and
  timestamps);

and checks in Python, for each order by its status:

* ``completed``, ``shipped`` or ``delivered`` (paid and kept): exactly one
  debit of its total from its buyer's wallet, no refund, and one ``reserved``
  reservation whose lines (product, quantity, unit price) are the order's;
* ``cancelled``: one debit and one refund of its total, to and from its
  buyer (they cancel out), and its reservation ``returned``;
* ``failed``: no net money, and no reservation, or a ``released`` one;
* ``pending`` and ``cancelling``: in flight for up to ``pending_after``
  seconds (a pending order from its creation, a cancelling one from the moment
  it started cancelling); older, a violation: recovery should have settled it;
* every paid or cancelled order's total is the sum of its lines, each line
  ``unit_price * quantity``;

and across orders:

* every sale debit or refund, and every reservation, belongs to an order;
* every wallet balance equals the sum of its ledger, and none is negative;
* no product has negative stock;
* the money in paid orders equals the money debited net of refunds, and the
  units in paid orders equal the units their ``reserved`` reservations hold.

Reservations and ledger entries are read *before* the orders: an order is
recorded before it reserves or debits, and marked ``cancelling`` before it is
refunded or its stock returned, so everything read first has its order (in
that state or a later one) in the later read. An order that looks wrong but
changed while the audit was reading (updated after its start, with 1 s of
clock tolerance) is counted as in flight rather than as a violation, so
auditing a busy shop reports no false violations.

Then the events (:mod:`seeder.audit_events`): every outbox row published, every
published event applied once by each group that reads it, no dead letters, and
the state events carry (ratings, verified purchases) equal to its source.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from seeder.audit_events import DEFAULT_MARGIN_S, EventsReader, check_events
from seeder.check import Check
from seeder.client import Login, Services

#: Orders that were paid and are kept: debited once, their stock reserved.
PAID = ("completed", "shipped", "delivered")
#: Orders a saga is still working on (or that recovery must finish).
IN_PROGRESS = ("pending", "cancelling")
STATUSES = (*IN_PROGRESS, *PAID, "cancelled", "failed")
#: Orders updated this close to the audit's start are treated as in flight (clock tolerance).
IN_FLIGHT_MARGIN = timedelta(seconds=1)
EXAMPLES = 20


@dataclass
class AuditReport:
    """Every check, plus the totals the audit saw."""

    checks: list[Check] = field(default_factory=list)
    sales: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    money_in_sales: Decimal = Decimal("0.00")
    money_debited: Decimal = Decimal("0.00")
    money_refunded: Decimal = Decimal("0.00")
    units_sold: int = 0
    units_reserved: int = 0
    ledger_entries: int = 0
    reservations: int = 0
    wallets_checked: int = 0
    total_balance: Decimal = Decimal("0.00")
    products_checked: int = 0
    pending_after_s: float = 60.0
    elapsed_s: float = 0.0
    #: What the audit could not check, and why (a service down, events off).
    notes: list[str] = field(default_factory=list)

    @property
    def violations(self) -> int:
        """How many violations in all."""
        return sum(len(check.violations) for check in self.checks)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(check.ok for check in self.checks)


def _when(value: str | None) -> datetime:
    if not value:
        return datetime.min.replace(tzinfo=UTC)
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _money(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal("0.00")


class Auditor:
    """Reads the shop through admin endpoints and checks the invariants."""

    def __init__(
        self,
        services: Services,
        admin: Login,
        pending_after_s: float = 60.0,
        *,
        events: bool = True,
        events_margin_s: float = DEFAULT_MARGIN_S,
    ) -> None:
        self.services = services
        self.admin = admin
        self.pending_after = timedelta(seconds=pending_after_s)
        self.events = events
        self.events_margin_s = events_margin_s

    def _all(self, api: Any, path: str, params: dict[str, Any] | None = None) -> list[Any]:
        return list(api.pages(path, params, token=self.admin.token()))

    def run(self) -> AuditReport:
        """Read everything, check every invariant, return the report."""
        started_clock = time.perf_counter()
        started = datetime.now(UTC)
        reservations = self._all(self.services.inventory, "/internal/reservations")
        ledger = self._all(self.services.customers, "/ledger", {"sales_only": "true"})
        sales = {sale["id"]: sale for sale in self._all(self.services.sales, "/sales")}
        consistency = self.services.customers.get(
            "/wallets/consistency", token=self.admin.token()
        ).body
        products = self._all(self.services.inventory, "/products")
        report = self.check(started, reservations, ledger, sales, consistency, products)
        if self.events:
            view = EventsReader(self.services, self.admin).read()
            report.checks += check_events(
                view, started, sales=sales, products=products, margin_s=self.events_margin_s
            )
            report.notes += view.notes
        report.elapsed_s = time.perf_counter() - started_clock
        return report

    def check(
        self,
        started: datetime,
        reservations: list[dict[str, Any]],
        ledger: list[dict[str, Any]],
        sales: dict[str, dict[str, Any]],
        consistency: dict[str, Any],
        products: list[dict[str, Any]],
    ) -> AuditReport:
        """The invariants over data already read (see the module documentation)."""
        report = AuditReport(pending_after_s=self.pending_after.total_seconds())
        report.ledger_entries, report.reservations = len(ledger), len(reservations)
        by_sale: Entries = defaultdict(list)
        for entry in ledger:
            by_sale[str(entry.get("sale_id"))].append(entry)
        reserved = {str(r["sale_id"]): r for r in reservations}
        sale_checks = {key: Check(name) for key, name in SALE_CHECKS.items()}
        stale = Check(
            f"no order pending or cancelling for more than {self.pending_after.total_seconds():g} s"
        )
        cutoff = started - IN_FLIGHT_MARGIN
        counts: dict[str, int] = defaultdict(int)
        judged: set[str] = set()
        for sale_id, sale in sales.items():
            status = sale["status"]
            counts[status] += 1
            if status in IN_PROGRESS:
                stale.checked += 1
                since = _in_progress_since(sale)
                if since < started - self.pending_after:
                    stale.violations.append(f"sale {sale_id} {status} since {since.isoformat()}")
                else:
                    report.in_flight += 1
                continue
            entries = by_sale.get(sale_id, [])
            problems = _sale_problems(sale_id, sale, entries, reserved.get(sale_id))
            if problems and _when(sale.get("updated_at")) > cutoff:
                # Changed while the audit was reading: what was read first may predate it.
                report.in_flight += 1
                continue
            judged.add(sale_id)
            for key in (*CHECKS_BY_STATUS.get(status, ()), "known_status"):
                sale_checks[key].checked += 1
            for key, message in problems:
                sale_checks[key].violations.append(message)
            report.money_debited -= sum((_money(e.get("amount")) for e in entries), Decimal(0))
            report.money_refunded += sum(
                (_money(e.get("amount")) for e in entries if e.get("kind") == REFUND),
                Decimal(0),
            )
            if status in PAID:
                report.money_in_sales += _money(sale.get("total"))
                report.units_sold += _units(_lines(sale))
        report.sales = dict(counts)
        report.checks = [
            *sale_checks.values(),
            stale,
            *_orphan_checks(ledger, reserved, sales),
            *_wallet_checks(consistency, report),
            _stock_check(products, report),
            _money_check(report, len(judged)),
            _units_check(reservations, judged, report),
        ]
        return report


Entries = dict[str, list[dict[str, Any]]]
Reservations = dict[str, dict[str, Any]]
#: A line as the audit compares it: product, quantity, unit price (``None`` if not given).
Line = tuple[int, int, Decimal | None]
DEBIT, REFUND = "sale_debit", "refund_credit"
SALE_CHECKS = {
    "paid_money": (
        "every completed, shipped or delivered order: exactly one debit of its total, no refund"
    ),
    "paid_stock": (
        "every completed, shipped or delivered order: its stock reserved once, line for line"
    ),
    "cancelled_money": "every cancelled order: one debit and one refund of its total",
    "cancelled_stock": "every cancelled order: its stock returned, line for line",
    "failed_money": "every failed order: no net debit",
    "failed_stock": "every failed order: stock released (or never reserved)",
    "totals": "every paid or cancelled order: total = sum of unit price x quantity",
    "known_status": "every order has a known status",
}
CHECKS_BY_STATUS = {
    **dict.fromkeys(PAID, ("paid_money", "paid_stock", "totals")),
    "cancelled": ("cancelled_money", "cancelled_stock", "totals"),
    "failed": ("failed_money", "failed_stock"),
}


def _in_progress_since(sale: dict[str, Any]) -> datetime:
    """When a pending or cancelling order entered that state.

    A pending order is aged from its creation and a cancelling one from its
    ``cancelling`` entry in the history: every recovery attempt bumps
    ``updated_at``, so an order that recovery can never settle would otherwise
    look young forever.
    """
    if sale["status"] == "cancelling":
        entered = [
            h.get("at") for h in sale.get("history") or [] if h.get("status") == "cancelling"
        ]
        if entered:
            return _when(entered[-1])
        if sale.get("completed_at"):
            return _when(sale["completed_at"])
    return _when(sale.get("created_at"))


def _price(value: Any) -> Decimal | None:
    return Decimal(str(value)) if value is not None else None


def _lines(record: dict[str, Any]) -> list[Line]:
    """The lines of an order or a reservation, sorted by product.

    A record without ``items`` (the older one-line shape) is its own one line.
    """
    items = record.get("items")
    if not items and record.get("product_id") is not None:
        items = [record]
    return sorted(
        (int(item["product_id"]), int(item["quantity"]), _price(item.get("unit_price")))
        for item in items or []
    )


def _units(lines: list[Line]) -> int:
    return sum(quantity for _, quantity, _ in lines)


def _describe(lines: list[Line]) -> str:
    return ", ".join(f"{quantity} of product {product}" for product, quantity, _ in lines) or "none"


def _same_lines(ordered: list[Line], reserved: list[Line]) -> bool:
    """Same products and quantities; same unit prices where both sides give one."""
    if [line[:2] for line in ordered] != [line[:2] for line in reserved]:
        return False
    return all(
        a[2] is None or b[2] is None or a[2] == b[2] for a, b in zip(ordered, reserved, strict=True)
    )


def _sale_problems(
    sale_id: str,
    sale: dict[str, Any],
    entries: list[dict[str, Any]],
    reservation: dict[str, Any] | None,
) -> list[tuple[str, str]]:
    """What is wrong with one settled order, as ``(check key, message)`` pairs."""
    status = sale["status"]
    if status == "failed":
        return _failed_problems(sale_id, entries, reservation)
    if status in PAID:
        money, stock, holding = "paid_money", "paid_stock", "reserved"
    elif status == "cancelled":
        money, stock, holding = "cancelled_money", "cancelled_stock", "returned"
    else:
        return [("known_status", f"sale {sale_id}: unknown status {status!r}")]
    problems = _total_problems(sale_id, sale)
    total = _money(sale.get("total"))
    buyer = sale.get("customer_id")
    refunds = 1 if status == "cancelled" else 0
    for kind, count, amount in ((DEBIT, 1, -total), (REFUND, refunds, total)):
        found = [e for e in entries if e.get("kind") == kind]
        name = "debits" if kind == DEBIT else "refunds"
        if len(found) != count:
            problems.append((money, f"sale {sale_id}: {len(found)} {name} ({status})"))
        elif found and _money(found[0].get("amount")) != amount:
            problems.append(
                (money, f"sale {sale_id}: {kind} {found[0].get('amount')} for a total of {total}")
            )
        elif found and found[0].get("customer_id") != buyer:
            problems.append(
                (
                    money,
                    f"sale {sale_id}: {kind} of customer {found[0].get('customer_id')}, "
                    f"bought by {buyer}",
                )
            )
    if reservation is None:
        problems.append((stock, f"sale {sale_id}: no reservation"))
    elif reservation.get("status") != holding:
        problems.append((stock, f"sale {sale_id}: reservation {reservation.get('status')}"))
    elif not _same_lines(_lines(sale), _lines(reservation)):
        problems.append(
            (
                stock,
                f"sale {sale_id}: reserved {_describe(_lines(reservation))}, "
                f"sold {_describe(_lines(sale))}",
            )
        )
    return problems


def _total_problems(sale_id: str, sale: dict[str, Any]) -> list[tuple[str, str]]:
    """A line total that is not unit price x quantity, or a total not the sum of the lines."""
    lines = _lines(sale)
    if not lines or any(price is None for _, _, price in lines):
        return [("totals", f"sale {sale_id}: no lines with unit prices")]
    for item in sale.get("items") or []:
        given = item.get("line_total")
        if given is not None and _money(given) != _money(item.get("unit_price")) * int(
            item["quantity"]
        ):
            return [
                (
                    "totals",
                    f"sale {sale_id}: line of product {item['product_id']} totals {given}, "
                    f"{item['quantity']} x {item.get('unit_price')}",
                )
            ]
    expected = sum((price * quantity for _, quantity, price in lines if price), Decimal(0))
    if _money(sale.get("total")) != expected:
        return [("totals", f"sale {sale_id}: total {sale.get('total')}, lines sum to {expected}")]
    return []


def _failed_problems(
    sale_id: str, entries: list[dict[str, Any]], reservation: dict[str, Any] | None
) -> list[tuple[str, str]]:
    """What is wrong with one failed order: money kept, or stock not released."""
    problems = []
    net = sum((_money(e.get("amount")) for e in entries), Decimal(0))
    if net != 0:
        problems.append(("failed_money", f"sale {sale_id}: {-net} kept from the wallet"))
    if reservation is not None and reservation.get("status") != "released":
        problems.append(
            (
                "failed_stock",
                f"sale {sale_id}: reservation {reservation.get('status')} "
                f"({_describe(_lines(reservation))})",
            )
        )
    return problems


def _orphan_checks(
    ledger: list[dict[str, Any]], reserved: Reservations, sales: dict[str, dict[str, Any]]
) -> tuple[Check, Check]:
    """Sale debits, refunds and reservations whose order does not exist."""
    money = Check("every sale debit and refund belongs to a sale")
    money.checked = len(ledger)
    for entry in ledger:
        sale_id = str(entry.get("sale_id"))
        if sale_id not in sales:
            money.violations.append(
                f"{entry.get('kind')} {entry.get('amount')} (entry {entry.get('id')}, "
                f"customer {entry.get('customer_id')}) for unknown sale {sale_id}"
            )
    stock = Check("every reservation belongs to a sale")
    stock.checked = len(reserved)
    for sale_id, reservation in reserved.items():
        if sale_id not in sales:
            stock.violations.append(
                f"reservation of {_describe(_lines(reservation))} "
                f"({reservation.get('status')}) for unknown sale {sale_id}"
            )
    return money, stock


def _wallet_checks(consistency: dict[str, Any], report: AuditReport) -> tuple[Check, Check]:
    """Balances against their ledgers, and no negative balance (from ``/wallets/consistency``)."""
    ledger = Check("every wallet balance equals the sum of its ledger")
    negative = Check("no negative balance")
    report.wallets_checked = int(consistency.get("wallets_checked", 0))
    report.total_balance = _money(consistency.get("total_balance"))
    ledger.checked = negative.checked = report.wallets_checked
    for row in consistency.get("mismatches", []):
        balance, ledger_sum = _money(row.get("balance")), _money(row.get("ledger_sum"))
        if balance != ledger_sum:
            ledger.violations.append(
                f"{row.get('username')}: balance {balance}, ledger sum {ledger_sum}"
            )
        if balance < 0:
            negative.violations.append(f"{row.get('username')}: balance {balance}")
    if not consistency.get("ok", True) and not (ledger.violations or negative.violations):
        ledger.violations.append("the customers service reports inconsistent wallets")
    return ledger, negative


def _stock_check(products: list[dict[str, Any]], report: AuditReport) -> Check:
    """No product with negative stock."""
    check = Check("no negative stock")
    check.checked = report.products_checked = len(products)
    for product in products:
        if int(product.get("stock") or 0) < 0:
            check.violations.append(
                f"product {product.get('id')} ({product.get('name')}): stock {product.get('stock')}"
            )
    return check


def _money_check(report: AuditReport, judged: int) -> Check:
    """The money in paid orders against the money debited, net of refunds."""
    check = Check("money in paid orders equals money debited, net of refunds")
    check.checked = judged
    if report.money_in_sales != report.money_debited:
        check.violations.append(
            f"{report.money_in_sales:.2f} in completed, shipped and delivered orders, "
            f"{report.money_debited:.2f} debited net of refunds"
        )
    return check


def _units_check(
    reservations: list[dict[str, Any]], judged: set[str], report: AuditReport
) -> Check:
    """The units in paid orders against the units their ``reserved`` reservations hold."""
    check = Check("units in paid orders equal units held in reserved reservations")
    held = [
        r for r in reservations if str(r["sale_id"]) in judged and r.get("status") == "reserved"
    ]
    check.checked = len(held)
    report.units_reserved = sum(_units(_lines(r)) for r in held)
    if report.units_reserved != report.units_sold:
        check.violations.append(
            f"{report.units_sold:,} units in paid orders, {report.units_reserved:,} reserved"
        )
    return check
