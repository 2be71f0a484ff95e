"""The audit's checks over hand-made data (no services): each invariant catches its violation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from seeder.audit import Auditor, AuditReport

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OLD = (NOW - timedelta(minutes=10)).isoformat()


def sale(status: str, total: str = "10.00", quantity: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "status": status,
        "total": total if status != "failed" else None,
        "quantity": quantity,
        "product_id": 1,
        "customer_id": 7,
        "created_at": OLD,
        "updated_at": OLD,
        **extra,
    }


def debit(sale_: dict[str, Any], amount: str | None = None) -> dict[str, Any]:
    return {
        "id": 1,
        "kind": "sale_debit",
        "amount": f"-{amount or sale_['total']}",
        "customer_id": 7,
        "sale_id": sale_["id"],
    }


def reservation(sale_: dict[str, Any], status: str = "reserved") -> dict[str, Any]:
    return {
        "sale_id": sale_["id"],
        "product_id": sale_["product_id"],
        "quantity": sale_["quantity"],
        "status": status,
    }


CONSISTENT = {"wallets_checked": 1, "total_balance": "90.00", "mismatches": [], "ok": True}


def audit(
    sales: list[dict[str, Any]],
    ledger: list[dict[str, Any]],
    reservations: list[dict[str, Any]],
    consistency: dict[str, Any] = CONSISTENT,
    products: list[dict[str, Any]] | None = None,
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


def test_a_consistent_shop_passes() -> None:
    done, refused, released = sale("completed"), sale("failed"), sale("failed")
    report = audit(
        [done, refused, released],
        [debit(done)],
        [reservation(done), reservation(released, "released")],
    )
    assert report.ok, failing(report)
    assert str(report.money_in_sales) == str(report.money_debited) == "10.00"
    assert report.sales == {"completed": 1, "failed": 2}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no debit", "exactly one debit"),
        ("wrong amount", "exactly one debit"),
        ("refunded", "exactly one debit"),
        ("stock released", "its stock reserved once"),
        ("failed kept money", "no net debit"),
        ("failed kept stock", "stock released"),
        ("orphan debit", "belongs to a sale"),
        ("orphan reservation", "every reservation belongs to a sale"),
        ("stale pending", "no sale pending"),
        ("wallet mismatch", "sum of its ledger"),
        ("negative stock", "no negative stock"),
    ],
)
def test_each_violation_is_caught(case: str, expected: str) -> None:
    done, refused = sale("completed"), sale("failed")
    sales, ledger = [done, refused], [debit(done)]
    reservations = [reservation(done)]
    consistency, products = dict(CONSISTENT), None
    if case == "no debit":
        ledger = []
    elif case == "wrong amount":
        ledger = [debit(done, "9.00")]
    elif case == "refunded":
        ledger.append({**debit(done), "kind": "refund_credit", "amount": "10.00"})
    elif case == "stock released":
        reservations = [reservation(done, "released")]
    elif case == "failed kept money":
        ledger.append(debit(refused, "5.00"))
    elif case == "failed kept stock":
        reservations.append(reservation(refused))
    elif case == "orphan debit":
        ledger.append(debit(sale("completed")))
    elif case == "orphan reservation":
        reservations.append(reservation(sale("failed")))
    elif case == "stale pending":
        sales.append(sale("pending"))
    elif case == "wallet mismatch":
        consistency = {
            **CONSISTENT,
            "ok": False,
            "mismatches": [{"username": "x", "balance": "5.00", "ledger_sum": "4.00"}],
        }
    elif case == "negative stock":
        products = [{"id": 1, "name": "Widget", "stock": -1}]
    report = audit(sales, ledger, reservations, consistency, products)
    assert not report.ok
    assert any(expected in name for name in failing(report)), failing(report)


def test_sales_settling_during_the_audit_are_in_flight_not_violations() -> None:
    just_now = (NOW + timedelta(milliseconds=300)).isoformat()
    racing = sale("completed", updated_at=just_now)  # its debit came after the ledger was read
    five_s_ago = (NOW - timedelta(seconds=5)).isoformat()
    young = sale("pending", created_at=five_s_ago, updated_at=five_s_ago)
    report = audit([racing, young], [], [reservation(racing)])
    assert report.ok, failing(report)
    assert report.in_flight == 2


def test_a_pending_sale_retried_recently_is_still_stale_from_its_creation() -> None:
    # Recovery bumps updated_at on every attempt; the age must come from created_at.
    retried = sale("pending", updated_at=(NOW - timedelta(seconds=2)).isoformat())
    report = audit([retried], [], [])
    stale = failing(report)["no sale pending for more than 60 s"]
    assert stale == [f"sale {retried['id']} pending since {OLD}"]
    assert report.in_flight == 0
