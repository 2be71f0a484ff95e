"""The fault suite's fixtures: private service processes, and a PostgreSQL of its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.database import migrate_as_service_roles, throwaway_server
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, SERVICE_SECRET
from tests.support.live import LiveStack


@pytest.fixture
def stack(database_url: str) -> Iterator[LiveStack]:
    """Processes on ports of their own against the session's test database."""
    live = LiveStack(database_url, (ADMIN_USERNAME, ADMIN_PASSWORD), SERVICE_SECRET)
    try:
        yield live
    finally:
        live.close()


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
