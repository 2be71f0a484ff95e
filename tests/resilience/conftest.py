"""The fault suite's fixtures: private service processes, and a PostgreSQL of its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.resilience.harness import FINDINGS
from tests.support.database import migrate_as_service_roles, throwaway_server
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, SERVICE_SECRET
from tests.support.live import LiveStack

#: How many of :data:`FINDINGS` the reports already carry.
NOTED = pytest.StashKey[int]()


@pytest.fixture
def stack(database_url: str) -> Iterator[LiveStack]:
    """Processes on ports of their own against the session's test database."""
    live = LiveStack(database_url, (ADMIN_USERNAME, ADMIN_PASSWORD), SERVICE_SECRET)
    try:
        yield live
    finally:
        live.stop_all()


@pytest.fixture
def own_database() -> Iterator[tuple[Any, str]]:
    """A PostgreSQL server of this test's own (it gets killed and frozen), migrated.

    Yields ``(server, database_url)``; the server is pgserver's handle.
    """
    with throwaway_server("shop-fault-pg-", durable=False) as (server, url):
        # Its ``shop`` database, thrown away with the server (no drop over a killed pool),
        # with the services' own roles, as the stack connects with them.
        migrate_as_service_roles(url)
        yield server, url


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach what the test noted to its report: the summary gets it from every xdist worker."""
    report = yield
    if call.when == "call":
        noted = item.session.stash.setdefault(NOTED, 0)
        report.user_properties.extend(("fault finding", line) for line in FINDINGS[noted:])
        item.session.stash[NOTED] = len(FINDINGS)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print each fault's worst latency and audit result (from every worker's reports)."""
    lines = [
        value
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        for name, value in report.user_properties
        if name == "fault finding"
    ]
    if lines:
        terminalreporter.section("fault suite: worst latency and audit per fault")
        for line in lines:
            terminalreporter.write_line(line)
