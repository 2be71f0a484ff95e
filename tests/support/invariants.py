"""The cross-service invariants of ARCHITECTURE §7, checked straight in the test database.

Tests may read every schema (a service never does): for every completed sale
the wallet was debited once and stock taken once; for every failed sale
neither (or both undone); money in the ledgers equals money in the sales.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import create_engine, text


@dataclass
class InvariantReport:
    """Violations found (empty when everything holds) and the totals compared."""

    violations: list[str] = field(default_factory=list)
    completed: int = 0
    failed: int = 0
    pending: int = 0
    units_sold: int = 0
    money_in_sales: str = "0.00"
    money_debited: str = "0.00"

    @property
    def ok(self) -> bool:
        """True when no invariant is violated."""
        return not self.violations


#: The one invariant that holds for wallets alone (a debit need not come from a sale).
WALLET_LEDGER = "wallet balance differs from its ledger"

CHECKS = {
    "completed sale without exactly one debit of its total": """
        SELECT s.id FROM sales.sales s
        WHERE s.status = 'completed' AND (
          SELECT count(*) FROM customers.ledger_entries e
          WHERE e.sale_id = s.id AND e.kind = 'sale_debit' AND e.amount = -s.total
        ) <> 1""",
    "completed sale whose stock is not reserved": """
        SELECT s.id FROM sales.sales s
        LEFT JOIN inventory.reservations r ON r.sale_id = s.id
        WHERE s.status = 'completed'
          AND (r.sale_id IS NULL OR r.status <> 'reserved' OR r.quantity <> s.quantity)""",
    "failed sale with money kept": """
        SELECT s.id FROM sales.sales s
        WHERE s.status = 'failed' AND COALESCE((
          SELECT sum(e.amount) FROM customers.ledger_entries e WHERE e.sale_id = s.id
        ), 0) <> 0""",
    "failed sale with stock kept": """
        SELECT s.id FROM sales.sales s
        JOIN inventory.reservations r ON r.sale_id = s.id
        WHERE s.status = 'failed' AND r.status = 'reserved'""",
    "debit without a sale": """
        SELECT e.sale_id FROM customers.ledger_entries e
        LEFT JOIN sales.sales s ON s.id = e.sale_id
        WHERE e.kind = 'sale_debit' AND s.id IS NULL""",
    WALLET_LEDGER: """
        SELECT c.username FROM customers.customers c
        WHERE c.balance <> COALESCE((
          SELECT sum(amount) FROM customers.ledger_entries e WHERE e.customer_id = c.id
        ), 0)""",
    "negative stock": "SELECT id FROM inventory.products WHERE stock < 0",
    "negative balance": "SELECT username FROM customers.customers WHERE balance < 0",
}


def wallet_ledger_mismatches(database_url: str) -> list[str]:
    """Usernames whose balance is not the sum of their ledger entries."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [str(row) for row in conn.execute(text(CHECKS[WALLET_LEDGER])).scalars()]
    finally:
        engine.dispose()


def check_invariants(database_url: str, *, allow_pending: bool = False) -> InvariantReport:
    """Check every invariant; with ``allow_pending`` off, a pending sale is a violation too."""
    report = InvariantReport()
    engine = create_engine(database_url)
    try:
        # One snapshot for every query, so a sale settling meanwhile cannot look
        # half-done to one check and done to the next.
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            for name, query in CHECKS.items():
                rows = conn.execute(text(query)).scalars().all()
                report.violations += [f"{name}: {row}" for row in rows]
            counts = dict(
                conn.execute(text("SELECT status, count(*) FROM sales.sales GROUP BY status")).all()
            )
            report.completed = counts.get("completed", 0)
            report.failed = counts.get("failed", 0)
            report.pending = counts.get("pending", 0)
            if report.pending and not allow_pending:
                report.violations.append(f"{report.pending} sales still pending")
            units, money = conn.execute(
                text(
                    "SELECT COALESCE(sum(quantity), 0), COALESCE(sum(total), 0) "
                    "FROM sales.sales WHERE status = 'completed'"
                )
            ).one()
            debited = conn.execute(
                text(
                    "SELECT COALESCE(-sum(amount), 0) FROM customers.ledger_entries "
                    "WHERE kind IN ('sale_debit', 'refund_credit')"
                )
            ).scalar_one()
            report.units_sold = int(units)
            report.money_in_sales = f"{money:.2f}"
            report.money_debited = f"{debited:.2f}"
            if report.money_in_sales != report.money_debited:
                report.violations.append(
                    f"money in sales {report.money_in_sales} != debited {report.money_debited}"
                )
    finally:
        engine.dispose()
    return report
