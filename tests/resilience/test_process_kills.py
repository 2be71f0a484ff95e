"""The fault suite's process kills: sales' worker and master, then customers and inventory,
killed (kill -9) while shoppers buy; recovery settles what they left pending.

The same script and verdict as the freezes (``test_fault_suite.py``; the tools in
``harness.py``): every answer within its bound, only 409 or 503 problems, the
invariants with nothing pending, money and stock balanced exactly.
"""

from __future__ import annotations

import time

import psutil
import pytest

from tests.resilience.harness import arrange, check_answers, note, settle_and_audit, shoppers
from tests.support.faults import SALES_ENV, start_shop
from tests.support.live import LiveStack

pytestmark = pytest.mark.processes


def running(process: psutil.Process) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sales_worker_then_master_killed_under_load(stack: LiveStack, database_url: str) -> None:
    """kill -9 one sales worker, then the master: orphans stop at once, recovery settles."""
    start_shop(stack)
    shop, tokens = arrange(stack)
    load = shoppers(stack, shop, tokens)
    time.sleep(1.5)
    master = psutil.Process(stack.processes["sales"].process.pid)  # type: ignore[union-attr]
    master.children()[0].kill()  # one worker: the master replaces it
    time.sleep(1.5)
    workers = master.children()
    master.kill()
    started = time.monotonic()
    while any(running(w) for w in workers) and time.monotonic() - started < 5:
        time.sleep(0.01)
    orphans_gone_s = time.monotonic() - started
    assert orphans_gone_s < 1.0, f"orphaned workers ran on for {orphans_gone_s:.2f} s"
    stack.processes["sales"].process.wait(timeout=5)  # type: ignore[union-attr]
    time.sleep(0.5)
    stack.start("sales", extra_env=SALES_ENV)
    time.sleep(1.5)
    answers = load.stop()
    worst = check_answers(answers)
    audit = settle_and_audit(stack, shop, database_url)
    note(
        "sales worker + master kill -9",
        answers,
        worst,
        audit,
        f"orphans gone {orphans_gone_s * 1000:.0f} ms after the master",
    )


def test_customers_then_inventory_killed_for_a_few_seconds(
    stack: LiveStack, database_url: str
) -> None:
    start_shop(stack)
    shop, tokens = arrange(stack)
    load = shoppers(stack, shop, tokens)
    for victim in ("customers", "inventory"):
        time.sleep(1.0)
        stack.kill(victim)
        time.sleep(3.0)
        stack.start(victim)
    time.sleep(1.5)
    answers = load.stop()
    worst = check_answers(answers)
    # Sales itself stayed up: every purchase got an answer, and the outages were felt as
    # 503 problems (recorded and pending, or refused before anything was recorded).
    assert all(a.status for a in answers), [a for a in answers if not a.status]
    felt = [a for a in answers if a.status == 503]
    assert felt, "no purchase noticed customers or inventory being down"
    assert {a.code for a in felt} <= {"sale_pending", "dependency_unavailable"}, felt
    audit = settle_and_audit(stack, shop, database_url)
    note("customers, then inventory killed for 3 s", answers, worst, audit)
