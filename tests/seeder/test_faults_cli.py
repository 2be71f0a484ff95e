"""``python -m seeder faults``: live faults switched on, shown and cleared in real services,
including the broker as a dependency and the events' crash points."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME
from tests.support.seeder import Run

pytestmark = pytest.mark.processes


def faults_of(stack: Any, service: str) -> list[dict[str, Any]]:
    token = stack.token(ADMIN_USERNAME, ADMIN_PASSWORD)
    answer = requests.get(
        stack.url(service) + "/admin/faults",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["faults"])


def test_a_broker_fault_and_an_event_crash_point_are_set_shown_and_cleared(
    run_seeder: Run, seeder_stack: Any
) -> None:
    hang = ["faults", "set", "sales", "--kind", "hang", "--hang-s", "1"]
    result = run_seeder(*hang, "--dependency", "broker", "--operation", "publish")
    assert result.exit_code == 0, result.output
    crash = ["faults", "set", "notifications", "--kind", "crash", "--after-step", "commit"]
    result = run_seeder(*crash, "--rate", "0.5")
    assert result.exit_code == 0, result.output
    try:
        assert [(f["kind"], f.get("dependency"), f.get("operation"))
                for f in faults_of(seeder_stack, "sales")] == [("hang", "broker", "publish")]  # fmt: skip
        assert [(f["kind"], f.get("after_step"))
                for f in faults_of(seeder_stack, "notifications")] == [("crash", "commit")]  # fmt: skip
        shown = run_seeder("faults", "show", "sales", "notifications", env={"COLUMNS": "240"})
        assert shown.exit_code == 0, shown.output
        assert "dependency=broker" in shown.output and "operation=publish" in shown.output
        assert "after_step=commit" in shown.output
    finally:
        cleared = run_seeder("faults", "clear", "sales", "notifications")
    assert cleared.exit_code == 0, cleared.output
    assert faults_of(seeder_stack, "sales") == faults_of(seeder_stack, "notifications") == []


def test_a_dependency_the_shop_does_not_have_is_refused_before_any_call(run_seeder: Run) -> None:
    result = run_seeder("faults", "set", "sales", "--kind", "error", "--dependency", "kafka")
    assert result.exit_code == 2
    assert "kafka" in result.output
