"""The audit after the load: ``python -m seeder audit`` and the invariant queries."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import IO, Any

from bench.harness import ADMIN, ROOT, Stack


def run_seeder(stack: Stack, args: list[str], log: IO[str], timeout_s: float) -> int:
    """Run ``python -m seeder <args>`` against the stack; its output goes to ``log``."""
    env = {
        **os.environ,
        **{f"{name.upper()}_URL": value for name, value in stack.urls.items()},
        "ADMIN_USERNAME": ADMIN[0],
        "ADMIN_PASSWORD": ADMIN[1],
        "COLUMNS": "120",
    }
    log.write(f"\n$ python -m seeder {' '.join(args)}\n")
    log.flush()
    try:
        return subprocess.run(
            [sys.executable, "-m", "seeder", *args],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=timeout_s,
        ).returncode
    except subprocess.TimeoutExpired:
        log.write(f"\n(timed out after {timeout_s:.0f} s)\n")
        return 124


def audit(url: str, stack: Stack, log: IO[str], use_seeder: bool) -> dict[str, Any]:
    """``seeder audit`` (through the APIs) and the direct invariant queries (in the database)."""
    from tests.support.invariants import check_invariants  # noqa: PLC0415

    report = check_invariants(url)
    result: dict[str, Any] = {
        "invariants_ok": report.ok,
        "violations": report.violations[:20],
        "sales_completed": report.completed,
        "sales_failed": report.failed,
        "sales_pending": report.pending,
        "money_in_sales": report.money_in_sales,
        "money_debited": report.money_debited,
    }
    if use_seeder:
        code = run_seeder(stack, ["audit", "--pending-after", "30"], log, timeout_s=180)
        result["seeder_audit_exit"] = code
        result["seeder_audit_ok"] = code == 0
    result["ok"] = report.ok and result.get("seeder_audit_ok", True)
    return result
