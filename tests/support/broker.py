"""The tests' message broker: a real embedded Valkey for the session, clients on it.

Its fixtures (``broker``, ``valkey``) reach every test directory through the root
conftest's ``pytest_plugins``; test modules request them by name and import nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from shopkit.events.relay import broker_client
from tests.support.database import broker as embedded_broker


@contextmanager
def connected(url: str, *, timeout_s: float = 2.0) -> Iterator[redis.Redis]:
    """A client on the broker at ``url`` (every call bounded by ``timeout_s``), closed after."""
    client = broker_client(url, timeout_s=timeout_s)
    try:
        yield client
    finally:
        client.close()


@contextmanager
def restartable(prefix: str = "shop-valkey-") -> Iterator[list[embedded_broker.Broker]]:
    """A broker of the caller's own, to kill and restart: a list holding it, to which the
    caller appends each restart (:func:`devstack.broker.restart`), the last one the running
    one. Every one started is stopped and its data deleted after the block."""
    with embedded_broker.throwaway_broker(prefix) as first:
        brokers = [first]
        try:
            yield brokers
        finally:
            for restarted in brokers[1:]:
                restarted.stop()


def emptied(url: str) -> None:
    """Delete everything the broker at ``url`` holds."""
    with connected(url) as client:
        client.flushall()


@pytest.fixture(scope="session")
def broker() -> Iterator[embedded_broker.Broker]:
    """The session's embedded valkey-server."""
    with embedded_broker.throwaway_broker() as running:
        yield running


@pytest.fixture
def valkey(broker: embedded_broker.Broker) -> Iterator[redis.Redis]:
    """A client on the broker, emptied first."""
    with connected(broker.url) as client:
        client.flushall()
        yield client
