"""The cross-service invariants of the sale, checked straight in the test database.

They are those of docs/architecture.rst, "The sale: one saga, exactly once".

Tests may read every schema (a service never does): for every paid order
(completed, shipped, delivered) the wallet was debited its total once and
every line's stock taken once; for every cancelled order the debit was
refunded once and the stock returned; for every failed order neither (or
both undone); money in the ledgers equals money in the paid orders.
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
    cancelled: int = 0
    #: Orders whose saga is still running: ``pending`` or ``cancelling``.
    unsettled: int = 0
    units_sold: int = 0
    money_in_sales: str = "0.00"
    money_debited: str = "0.00"

    @property
    def ok(self) -> bool:
        """True when no invariant is violated."""
        return not self.violations


#: The one invariant that holds for wallets alone (a debit need not come from a sale).
WALLET_LEDGER = "wallet balance differs from its ledger"

PAID = "('completed', 'shipped', 'delivered')"
#: An order's lines as one comparable text, in the sales and in the inventory schema.
SALE_LINES = """(SELECT string_agg(l.product_id || 'x' || l.quantity, ',' ORDER BY l.product_id)
                 FROM sales.sale_lines l WHERE l.sale_id = s.id)"""
RESERVED_LINES = """(SELECT string_agg(l.product_id || 'x' || l.quantity, ',' ORDER BY l.product_id)
                     FROM inventory.reservation_lines l WHERE l.sale_id = s.id)"""

CHECKS = {
    "paid order without exactly one debit of its total": f"""
        SELECT s.id FROM sales.sales s
        WHERE s.status IN {PAID} AND (
          SELECT count(*) FROM customers.ledger_entries e
          WHERE e.sale_id = s.id AND e.kind = 'sale_debit' AND e.amount = -s.total
        ) <> 1""",
    "paid order refunded": f"""
        SELECT s.id FROM sales.sales s
        JOIN customers.ledger_entries e ON e.sale_id = s.id AND e.kind = 'refund_credit'
        WHERE s.status IN {PAID}""",
    "paid order whose stock is not reserved line for line": f"""
        SELECT s.id FROM sales.sales s
        LEFT JOIN inventory.reservations r ON r.sale_id = s.id
        WHERE s.status IN {PAID}
          AND (r.sale_id IS NULL OR r.status <> 'reserved'
               OR {RESERVED_LINES} IS DISTINCT FROM {SALE_LINES})""",
    "order total differs from the sum of its lines": """
        SELECT s.id FROM sales.sales s
        WHERE s.total IS NOT NULL AND s.total <> (
          SELECT sum(l.unit_price * l.quantity) FROM sales.sale_lines l WHERE l.sale_id = s.id)""",
    "cancelled order without one debit and one refund of its total": """
        SELECT s.id FROM sales.sales s
        WHERE s.status = 'cancelled' AND (
          (SELECT count(*) FROM customers.ledger_entries e
           WHERE e.sale_id = s.id AND e.kind = 'sale_debit' AND e.amount = -s.total) <> 1
          OR (SELECT count(*) FROM customers.ledger_entries e
              WHERE e.sale_id = s.id AND e.kind = 'refund_credit' AND e.amount = s.total) <> 1
          OR (SELECT count(*) FROM customers.ledger_entries e WHERE e.sale_id = s.id) <> 2)""",
    "cancelled order whose stock was not returned": """
        SELECT s.id FROM sales.sales s
        LEFT JOIN inventory.reservations r ON r.sale_id = s.id
        WHERE s.status = 'cancelled' AND (r.sale_id IS NULL OR r.status <> 'returned')""",
    "failed order with money kept": """
        SELECT s.id FROM sales.sales s
        WHERE s.status = 'failed' AND COALESCE((
          SELECT sum(e.amount) FROM customers.ledger_entries e WHERE e.sale_id = s.id
        ), 0) <> 0""",
    "failed order with stock kept": """
        SELECT s.id FROM sales.sales s
        JOIN inventory.reservations r ON r.sale_id = s.id
        WHERE s.status = 'failed' AND r.status <> 'released'""",
    "debit or refund without an order": """
        SELECT e.sale_id FROM customers.ledger_entries e
        LEFT JOIN sales.sales s ON s.id = e.sale_id
        WHERE e.kind IN ('sale_debit', 'refund_credit') AND s.id IS NULL""",
    "reservation without an order": """
        SELECT r.sale_id FROM inventory.reservations r
        LEFT JOIN sales.sales s ON s.id = r.sale_id WHERE s.id IS NULL""",
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
    """Check every invariant; with ``allow_pending`` off, an unsettled order is a violation too.

    ``completed`` counts every paid order (completed, shipped or delivered).
    """
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
            report.completed = sum(counts.get(s, 0) for s in ("completed", "shipped", "delivered"))
            report.failed = counts.get("failed", 0)
            report.pending = counts.get("pending", 0)
            report.cancelled = counts.get("cancelled", 0)
            report.unsettled = report.pending + counts.get("cancelling", 0)
            if report.unsettled and not allow_pending:
                report.violations.append(f"{report.unsettled} orders still pending or cancelling")
            units = conn.execute(
                text(
                    "SELECT COALESCE(sum(l.quantity), 0) FROM sales.sale_lines l "
                    f"JOIN sales.sales s ON s.id = l.sale_id WHERE s.status IN {PAID}"
                )
            ).scalar_one()
            money = conn.execute(
                text(f"SELECT COALESCE(sum(total), 0) FROM sales.sales WHERE status IN {PAID}")
            ).scalar_one()
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
