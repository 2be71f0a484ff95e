"""The replay checks that each order's notification arrived (issue 26, item 9).

The live stack's services publish to its real broker, the notifications service
and its worker run as processes: every completed order of the replay must reach
its buyer's ``GET /notifications``. With the worker stopped the next replay's
orders are reported missing and the replay fails; without ``EVENTS_URL`` the
check is skipped with its reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack import mailsink
from tests.support.notifications import worker_from_now
from tests.support.seeder import Run

pytestmark = pytest.mark.processes

#: A wide console, so that the summary's rows do not wrap.
WIDE = {"COLUMNS": "200"}


@pytest.fixture
def events_stack(seeder_stack: Any, tmp_path: Path) -> Iterator[tuple[dict[str, str], Any]]:
    """The notifications service and its worker beside the live stack's services and broker
    (``EVENTS_URL``, as ``make run`` has it), the group starting at the streams' end (the
    session's earlier events are not its work); the environment the seeder needs, and the
    worker."""
    sink = mailsink.start(tmp_path / "mail")
    seeder_stack.start("notifications")
    try:
        with worker_from_now(
            seeder_stack, sink.url, tmp_path / "worker.log", WORKER_METRICS_PORT="0"
        ) as worker:
            env = {
                "EVENTS_URL": seeder_stack.events_url,
                "NOTIFICATIONS_URL": seeder_stack.url("notifications"),
            }
            yield env, worker
    finally:
        sink.stop()


def test_each_orders_notification_arrives_or_the_replay_fails(
    run_seeder: Run, events_stack: tuple[dict[str, str], Any]
) -> None:
    env, worker = events_stack
    populated = run_seeder("populate", "--customers", "6", "--products", "8", "--seed", "31")
    assert populated.exit_code == 0, populated.output
    replay = ("replay", "--concurrency", "3", "--seed", "31", "--ship-share", "0.6")
    result = run_seeder(*replay, "--purchases", "12", "--cancel-share", "0.2", env={**env, **WIDE})
    assert result.exit_code == 0, result.output
    found = re.search(r"(\d+) of (\d+) orders notified within 30 s", result.output)
    assert found, result.output
    assert found[1] == found[2] and int(found[2]) > 0, found[0]

    # Nothing consumes any more: the next orders' notifications never come.
    worker.stop()
    result = run_seeder(
        *replay, "--purchases", "4", "--notification-bound", "2", env={**env, **WIDE}
    )
    assert result.exit_code == 1, result.output
    assert re.search(r"(\d+) of \1 orders not notified within 2 s", result.output), result.output
    assert "notification missing: sale " in result.output
    assert "no shop.order.completed.v1" in result.output


def test_without_events_the_check_is_skipped_not_failed(run_seeder: Run) -> None:
    populated = run_seeder("populate", "--customers", "3", "--products", "5", "--seed", "32")
    assert populated.exit_code == 0, populated.output
    result = run_seeder(
        "replay", "--purchases", "3", "--seed", "32", env={"EVENTS_URL": "", **WIDE}
    )
    assert result.exit_code == 0, result.output
    assert "not checked: EVENTS_URL is not set" in result.output
