"""How ``make test`` hands the tests to its pytest-xdist workers: a plugin of the root conftest.

Each test file runs whole on one worker (``--dist loadfile``), so its module-
and session-scoped stacks start once; a directory whose files share one costly
session fixture (``tests/docs``: one docs build) is one unit. The units that
take longest go first, so that the workers finish together instead of one
waiting on a long file started last.
"""

from __future__ import annotations

from typing import Any

import pytest

#: Directories whose files share one costly session fixture: each runs whole on one
#: xdist worker (the docs pages and their browser checks share one docs build).
SHARED_DIRECTORIES = ("tests/docs/",)
#: The work units that take longest, slowest first: ``make test`` hands them out first,
#: so the workers finish together instead of one waiting on a long file started last.
SLOWEST_FIRST = (
    # The fault suite's session (tests/suite.py), one file at a time.
    "tests/resilience/test_fault_suite.py",
    "tests/resilience/test_event_faults.py",
    "tests/resilience/test_process_kills.py",
    "tests/resilience/test_live_faults.py",
    # The other tests' session.
    "tests/docs",
    "tests/e2e/test_make_run.py",
    "tests/sales/test_races_and_faults.py",
    "tests/seeder/test_cli.py",
    "tests/sales/test_order_races_and_faults.py",
    "tests/storefront/test_browser_shopper.py",
    "tests/storefront/test_console_browser.py",
    "tests/contract/test_schemathesis.py",
    "tests/compose/test_compose.py",
    "tests/observability/test_traces.py",
    "tests/customers/test_openapi_fuzz.py",
    "tests/sales/test_batched_writes.py",
    "tests/sales/test_batching.py",
    "tests/deploy/test_database_per_service.py",
    "tests/storefront/test_browser.py",
    "tests/events/test_consumer.py",
    "tests/storefront/test_live.py",
    "tests/sales/test_pending_checkout.py",
    "tests/sales/test_orders.py",
    "tests/seeder/test_events_cli.py",
)


def work_unit(nodeid: str) -> str:
    """What runs whole on one xdist worker: the test's file, or its shared directory."""
    path = nodeid.split("::", 1)[0]
    return next((d.rstrip("/") for d in SHARED_DIRECTORIES if path.startswith(d)), path)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` (``make test``), with each shared directory as one unit.

    A file runs whole on one worker, so its module- and session-scoped stacks start
    once per worker that runs it (a session's database is one per worker).
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    # By default xdist queues the units by their number of tests, most first, which undoes
    # the slowest-first order of the collection (pytest_collection_modifyitems).
    config.option.loadscopereorder = False

    class FilesAndSharedDirectories(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return FilesAndSharedDirectories(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker, order the work units slowest first (each kept in one piece).

    The scheduler hands the units out in collection order.
    """
    if hasattr(config, "workerinput"):
        rank = {unit: index for index, unit in enumerate(SLOWEST_FIRST)}
        items.sort(key=lambda item: rank.get(work_unit(item.nodeid), len(rank)))
