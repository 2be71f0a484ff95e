"""The fault suite's freezes (issue 15, and the 10 s bound of docs/errors.rst): a dependency,
then PostgreSQL, stopped (SIGSTOP) for longer than a request's deadline under 16 buyers.

Each test arranges a shop over HTTP, runs shoppers while the fault happens,
lets recovery settle what was left pending, and checks: every purchase
answered within 10 s and every health check within 1 s; every error was a
409 or 503 problem; the invariants hold with nothing pending; money and
stock balance exactly. The worst latency and the audit of each fault are
printed at the end of the run. The process kills are in ``test_process_kills.py``,
the faults switched on live in ``test_live_faults.py``, the broker's and the
consumers' in ``test_event_faults.py``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import psutil
import pytest

from tests.resilience.harness import (
    HEALTH_BOUND_S,
    arrange,
    check_answers,
    note,
    probe_health,
    settle_and_audit,
    shoppers,
)
from tests.support.faults import start_shop
from tests.support.live import LiveStack

pytestmark = pytest.mark.processes

#: Freezes last longer than a request's deadline (8 s), so queued time and timeouts show.
FREEZE_S = 15.0
#: Concurrent buyers while a dependency, or PostgreSQL, is frozen.
BUYERS = 16


def freeze(pid: int, *, group: bool) -> list[psutil.Process]:
    """SIGSTOP a process (and its children, or its whole group); returns what was stopped."""
    if group:
        os.killpg(pid, signal.SIGSTOP)
        return [psutil.Process(pid)]
    parent = psutil.Process(pid)
    frozen = [parent, *parent.children(recursive=True)]
    for process in frozen:
        process.send_signal(signal.SIGSTOP)
    return frozen


def thaw(frozen: list[psutil.Process], *, group: bool) -> None:
    for process in frozen:
        try:
            if group:
                os.killpg(process.pid, signal.SIGCONT)
            else:
                process.send_signal(signal.SIGCONT)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass


def frozen_for(
    seconds: float, pid: int, *, group: bool, sales_url: str, health: list[float]
) -> None:
    """Keep ``pid`` stopped for ``seconds`` while timing sales' health checks into ``health``."""
    frozen = freeze(pid, group=group)
    probe = threading.Thread(
        target=probe_health,
        args=(sales_url, time.monotonic() + seconds - 0.5, health),
        daemon=True,
    )
    probe.start()
    time.sleep(seconds)
    thaw(frozen, group=group)
    probe.join()


def test_frozen_dependencies_keep_answers_and_health_bounded(
    stack: LiveStack, database_url: str
) -> None:
    """SIGSTOP inventory, then customers, for longer than the deadline, with 16 buyers."""
    start_shop(stack, as_deployed=True)
    shop, tokens = arrange(stack, buyers=BUYERS)
    load = shoppers(stack, shop, tokens, threads=BUYERS)
    health: list[float] = []
    for victim in ("inventory", "customers"):
        time.sleep(1.0)
        pid = stack.processes[victim].process.pid  # type: ignore[union-attr]
        frozen_for(FREEZE_S, pid, group=True, sales_url=stack.url("sales"), health=health)
    time.sleep(2.0)
    answers = load.stop()
    worst = check_answers(answers)
    assert max(health) <= HEALTH_BOUND_S, max(health)
    assert any(a.code == "sale_pending" for a in answers)
    audit = settle_and_audit(stack, shop, database_url)
    note(
        f"inventory, then customers frozen (SIGSTOP) {FREEZE_S:.0f} s, {BUYERS} buyers",
        answers,
        worst,
        audit,
        f"worst sales /healthz or /readyz {max(health) * 1000:.0f} ms",
    )


def test_postgres_frozen_then_killed_and_restarted(
    own_database: tuple[Any, str],
) -> None:
    """SIGSTOP every PostgreSQL process for 15 s (16 buyers); later kill -9 and restart it."""
    server, url = own_database
    from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, SERVICE_SECRET

    stack = LiveStack(url, (ADMIN_USERNAME, ADMIN_PASSWORD), SERVICE_SECRET)
    try:
        start_shop(stack, as_deployed=True)
        shop, tokens = arrange(stack, buyers=BUYERS)
        load = shoppers(stack, shop, tokens, threads=BUYERS)
        health: list[float] = []
        time.sleep(1.0)
        frozen_for(
            FREEZE_S, server.get_pid(), group=False, sales_url=stack.url("sales"), health=health
        )
        time.sleep(2.0)

        postmaster = psutil.Process(server.get_pid())
        backends = postmaster.children(recursive=True)
        postmaster.kill()
        psutil.wait_procs([postmaster, *backends], timeout=10)
        time.sleep(2.0)
        server.ensure_postgres_running()
        time.sleep(3.0)
        answers = load.stop()
        worst = check_answers(answers)
        assert max(health) <= HEALTH_BOUND_S, max(health)
        codes = {a.code for a in answers if a.status == 503}
        assert "internal_error" not in codes
        assert codes & {"database_unavailable", "sale_pending"}, codes
        audit = settle_and_audit(stack, shop, url)
        note(
            f"PostgreSQL frozen {FREEZE_S:.0f} s ({BUYERS} buyers), then kill -9 and restart",
            answers,
            worst,
            audit,
            f"worst sales /healthz or /readyz {max(health) * 1000:.0f} ms",
        )
    finally:
        stack.close()
