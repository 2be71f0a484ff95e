"""``audit``: the cross-service invariants of ARCHITECTURE §7, read through admin endpoints.

The seeder never reads a service's database. It reads, page by page:

* inventory ``GET /internal/reservations`` (admins may read them) and ``GET /products``;
* customers ``GET /ledger?sales_only=true`` (sale debits and refunds across
  wallets) and ``GET /wallets/consistency`` (balance against ledger, per wallet);
* sales ``GET /sales`` (every sale, with status, total and timestamps);

and checks in Python:

* every completed sale has exactly one debit of its total from its buyer's
  wallet, no refund, and one reservation of its product and quantity that
  still holds the stock;
* every failed sale has no net debit and no stock still reserved;
* no sale has been pending for longer than ``pending_after`` seconds since
  it was created (younger pending sales are in flight and are left alone);
* every sale debit or refund, and every reservation, belongs to a sale;
* every wallet balance equals the sum of its ledger, and none is negative;
* no product has negative stock;
* the money in completed sales equals the money debited (net of refunds).

Reservations and ledger entries are read *before* the sales: a sale is
recorded before it reserves or debits, so everything read first has its sale
in the later read. A sale that looks wrong but was settled while the audit
was reading (updated after its start, with 1 s of clock tolerance) is counted
as in flight rather than as a violation, so auditing a busy shop reports no
false violations; pending sales younger than ``pending_after`` are in flight
too.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from seeder.client import Login, Services

#: Sales updated this close to the audit's start are treated as in flight (clock tolerance).
IN_FLIGHT_MARGIN = timedelta(seconds=1)
EXAMPLES = 20


@dataclass
class Check:
    """One invariant: how many things it looked at and what broke it."""

    name: str
    checked: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing violates the invariant."""
        return not self.violations


@dataclass
class AuditReport:
    """Every check, plus the totals the audit saw."""

    checks: list[Check] = field(default_factory=list)
    sales: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    money_in_sales: Decimal = Decimal("0.00")
    money_debited: Decimal = Decimal("0.00")
    units_sold: int = 0
    ledger_entries: int = 0
    reservations: int = 0
    wallets_checked: int = 0
    total_balance: Decimal = Decimal("0.00")
    products_checked: int = 0
    pending_after_s: float = 60.0
    elapsed_s: float = 0.0

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

    def __init__(self, services: Services, admin: Login, pending_after_s: float = 60.0) -> None:
        self.services = services
        self.admin = admin
        self.pending_after = timedelta(seconds=pending_after_s)

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
        stale = Check(f"no sale pending for more than {self.pending_after.total_seconds():g} s")
        cutoff = started - IN_FLIGHT_MARGIN
        counts: dict[str, int] = defaultdict(int)
        settled = 0
        for sale_id, sale in sales.items():
            status = sale["status"]
            counts[status] += 1
            if status == "pending":
                stale.checked += 1
                # Age from creation: every recovery attempt bumps updated_at, so a sale
                # that recovery can never settle would otherwise look young forever.
                created = _when(sale.get("created_at"))
                if created < started - self.pending_after:
                    stale.violations.append(f"sale {sale_id} pending since {created.isoformat()}")
                else:
                    report.in_flight += 1
                continue
            updated = _when(sale.get("updated_at"))
            entries = by_sale.get(sale_id, [])
            problems = _sale_problems(sale_id, sale, entries, reserved.get(sale_id))
            if problems and updated > cutoff:
                # Settled while the audit was reading: what was read first may predate it.
                report.in_flight += 1
                continue
            settled += 1
            for key in CHECKS_BY_STATUS.get(status, ()):
                sale_checks[key].checked += 1
            for key, message in problems:
                sale_checks[key].violations.append(message)
            report.money_debited -= sum((_money(e.get("amount")) for e in entries), Decimal(0))
            if status == "completed":
                report.money_in_sales += _money(sale.get("total"))
                report.units_sold += int(sale.get("quantity") or 0)
        report.sales = dict(counts)
        money = Check("money in completed sales equals money debited, net of refunds")
        money.checked = settled
        if report.money_in_sales != report.money_debited:
            money.violations.append(
                f"{report.money_in_sales:.2f} in completed sales, "
                f"{report.money_debited:.2f} debited"
            )
        report.checks = [
            *sale_checks.values(),
            stale,
            *_orphan_checks(ledger, reserved, sales),
            *_wallet_checks(consistency, report),
            _stock_check(products, report),
            money,
        ]
        return report


Entries = dict[str, list[dict[str, Any]]]
Reservations = dict[str, dict[str, Any]]
SALE_CHECKS = {
    "completed_money": "every completed sale: exactly one debit of its total, no refund",
    "completed_stock": "every completed sale: its stock reserved once",
    "failed_money": "every failed sale: no net debit",
    "failed_stock": "every failed sale: stock released (or never reserved)",
}
CHECKS_BY_STATUS = {
    "completed": ("completed_money", "completed_stock"),
    "failed": ("failed_money", "failed_stock"),
}


def _sale_problems(
    sale_id: str,
    sale: dict[str, Any],
    entries: list[dict[str, Any]],
    reservation: dict[str, Any] | None,
) -> list[tuple[str, str]]:
    """What is wrong with one settled sale, as ``(check key, message)`` pairs."""
    if sale["status"] == "failed":
        return _failed_problems(sale_id, entries, reservation)
    if sale["status"] != "completed":
        return []
    problems = []
    total = _money(sale.get("total"))
    debits = [e for e in entries if e.get("kind") == "sale_debit"]
    if len(debits) != 1:
        problems.append(("completed_money", f"sale {sale_id}: {len(debits)} debits"))
    elif _money(debits[0].get("amount")) != -total:
        problems.append(
            (
                "completed_money",
                f"sale {sale_id}: debit {debits[0].get('amount')} for a total of {total}",
            )
        )
    elif debits[0].get("customer_id") != sale.get("customer_id"):
        problems.append(
            (
                "completed_money",
                f"sale {sale_id}: debited from customer {debits[0].get('customer_id')}, "
                f"bought by {sale.get('customer_id')}",
            )
        )
    if any(e.get("kind") == "refund_credit" for e in entries):
        problems.append(("completed_money", f"sale {sale_id}: completed but refunded"))
    if reservation is None:
        problems.append(("completed_stock", f"sale {sale_id}: no reservation"))
    elif reservation.get("status") != "reserved":
        problems.append(
            ("completed_stock", f"sale {sale_id}: reservation {reservation.get('status')}")
        )
    elif (reservation.get("product_id"), reservation.get("quantity")) != (
        sale.get("product_id"),
        sale.get("quantity"),
    ):
        problems.append(
            (
                "completed_stock",
                f"sale {sale_id}: reserved {reservation.get('quantity')} of product "
                f"{reservation.get('product_id')}, sold {sale.get('quantity')} of "
                f"{sale.get('product_id')}",
            )
        )
    return problems


def _failed_problems(
    sale_id: str, entries: list[dict[str, Any]], reservation: dict[str, Any] | None
) -> list[tuple[str, str]]:
    """What is wrong with one failed sale: money kept, or stock still reserved."""
    problems = []
    net = sum((_money(e.get("amount")) for e in entries), Decimal(0))
    if net != 0:
        problems.append(("failed_money", f"sale {sale_id}: {-net} kept from the wallet"))
    if reservation is not None and reservation.get("status") == "reserved":
        problems.append(
            ("failed_stock", f"sale {sale_id}: {reservation.get('quantity')} units still reserved")
        )
    return problems


def _orphan_checks(
    ledger: list[dict[str, Any]], reserved: Reservations, sales: dict[str, dict[str, Any]]
) -> tuple[Check, Check]:
    """Sale debits, refunds and reservations whose sale does not exist."""
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
                f"reservation of {reservation.get('quantity')} of product "
                f"{reservation.get('product_id')} ({reservation.get('status')}) for unknown "
                f"sale {sale_id}"
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
