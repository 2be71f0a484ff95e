"""The fault suite's live faults: latency, an error rate, a hang and a crash after a saga
step, switched on through the services' fault API while shoppers buy, and a retry storm.

The same script and verdict as the freezes (``test_fault_suite.py``; the tools in
``harness.py``).
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.resilience.harness import (
    arrange,
    buy,
    check_answers,
    note,
    settle_and_audit,
    shoppers,
)
from tests.support.faults import start_shop
from tests.support.live import LiveStack

pytestmark = pytest.mark.processes


def _set_faults(stack: LiveStack, service: str, faults: list[dict[str, Any]], admin: Any) -> None:
    response = requests.put(
        stack.url(service) + "/admin/faults", json={"faults": faults}, headers=admin, timeout=10
    )
    assert response.status_code == 200, response.text


def test_each_live_fault_and_a_retry_storm(stack: LiveStack, database_url: str) -> None:
    """Latency, an error rate, a hang and a crash after a saga step, switched on live."""
    start_shop(stack)
    shop, tokens = arrange(stack)
    admin = shop.admin
    seen: dict[str, tuple[list[Any], float]] = {}
    live_faults = {
        "latency 400 ms on sales→inventory": (
            "sales",
            [{"kind": "latency", "dependency": "inventory", "latency_ms": 400}],
        ),
        "50% errors on inventory POST /internal/reservations": (
            "inventory",
            [{"kind": "error", "route": "POST /internal/reservations", "rate": 0.5}],
        ),
        "hang on customers POST /internal/wallet-debits": (
            "customers",
            [{"kind": "hang", "route": "POST /internal/wallet-debits", "hang_s": 6}],
        ),
        "crash after the debit (30%)": (
            "sales",
            [{"kind": "crash", "after_step": "debit", "rate": 0.3}],
        ),
    }
    for name, (service, faults) in live_faults.items():
        _set_faults(stack, service, faults, admin)
        load = shoppers(stack, shop, tokens, threads=3)
        time.sleep(3.0)
        answers = load.stop()
        cleared = requests.delete(stack.url(service) + "/admin/faults", headers=admin, timeout=10)
        assert cleared.status_code == 204
        crash = faults[0]["kind"] == "crash"
        seen[name] = (answers, check_answers(answers, some_answered=not crash))
        if crash:
            assert any(a.status == 0 for a in answers)  # some workers did die mid-saga
            stack.processes["sales"].wait_ready()  # the master has replaced them

    # A retry storm of one key, with inventory slow: one order, one charge.
    _set_faults(
        stack, "sales", [{"kind": "latency", "dependency": "inventory", "latency_ms": 300}], admin
    )
    product = next(iter(shop.products))
    key = f"storm-{uuid.uuid4()}"
    with ThreadPoolExecutor(max_workers=12) as pool:
        storm = list(
            pool.map(lambda _: buy(stack.url("sales"), tokens[0], product, 1, key), range(24))
        )
    requests.delete(stack.url("sales") + "/admin/faults", headers=admin, timeout=10)
    seen["retry storm, 24 x one key, inventory slowed 300 ms"] = (storm, check_answers(storm))
    assert {a.code for a in storm if a.status != 201} <= {"sale_in_progress", "sale_pending"}
    audit = settle_and_audit(stack, shop, database_url)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        under_key = conn.execute(
            text("SELECT count(*) FROM sales.sales WHERE idempotency_key = :k"), {"k": key}
        ).scalar_one()
    engine.dispose()
    assert under_key == 1  # the storm bought once (its one charge: settle_and_audit)
    for name, (answers, worst) in seen.items():
        note(name, answers, worst, audit)
