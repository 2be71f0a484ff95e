"""The replay checks that each order's notification arrived (issue 26, item 9).

The live stack's services publish to its real broker, the notifications service
and its worker run as processes: every completed order of the replay must reach
its buyer's ``GET /notifications``. With the worker stopped the next replay's
orders are reported missing and the replay fails; without ``EVENTS_URL`` the
check is skipped with its reason.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from devstack import mailsink
from devstack.processes import WorkerProcess
from notifications_service.notifications import GROUP, STREAMS
from tests.support.seeder import Run

pytestmark = pytest.mark.processes

#: A wide console, so that the summary's rows do not wrap.
WIDE = {"COLUMNS": "200"}
#: The longest the new group may take to catch up on the session's earlier events.
CATCH_UP_S = 90.0


def caught_up(events_url: str) -> bool:
    """Whether the ``notifications`` group has every order and wallet event delivered and
    acknowledged."""
    broker = redis.Redis.from_url(events_url, socket_timeout=5)
    try:
        for stream in STREAMS:
            groups = broker.xinfo_groups(stream) if broker.exists(stream) else []
            mine = [g for g in groups if g["name"] == GROUP.encode()]
            if not mine or mine[0]["lag"] or mine[0]["pending"]:
                return False
        return True
    finally:
        broker.close()


@pytest.fixture
def events_stack(seeder_stack: Any, tmp_path: Path) -> Iterator[tuple[dict[str, str], Any]]:
    """The notifications service and its worker beside the live stack's services and broker
    (``EVENTS_URL``, as ``make run`` has it), the group caught up on the session's earlier
    events; the environment the seeder needs, and the worker."""
    assert seeder_stack.events_url, "the live stack runs a broker"
    sink = mailsink.start(tmp_path / "mail")
    seeder_stack.start("notifications")
    worker = WorkerProcess(
        "notifications-worker",
        "notifications_service.worker",
        env={
            **seeder_stack.env("notifications"),
            "SMTP_URL": sink.url,
            "WORKER_METRICS_PORT": "0",
        },
        log=(tmp_path / "worker.log").open("ab"),
    )
    worker.start()
    try:
        deadline = time.monotonic() + CATCH_UP_S
        while not caught_up(seeder_stack.events_url):
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.5)
        env = {
            "EVENTS_URL": seeder_stack.events_url,
            "NOTIFICATIONS_URL": seeder_stack.url("notifications"),
        }
        yield env, worker
    finally:
        worker.stop()
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
