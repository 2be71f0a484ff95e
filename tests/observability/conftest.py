"""Traced services: real gunicorn processes exporting OTLP/HTTP to a receiver in the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.observability.receiver import OtlpReceiver
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, SERVICE_SECRET
from tests.support.live import LiveStack
from tests.support.tracing import Arrange, otel_env


@pytest.fixture(scope="session")
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="package")
def traced(database_url: str, receiver: OtlpReceiver) -> Iterator[LiveStack]:
    """Customers, inventory and sales (one worker each), all tracing to ``receiver``.

    Package-scoped: its sales runs recovery every half second on the shared test
    database, so it must be gone before other packages' tests leave orders pending.
    """
    stack = LiveStack(database_url, (ADMIN_USERNAME, ADMIN_PASSWORD), SERVICE_SECRET)
    try:
        for service in ("customers", "inventory", "sales"):
            stack.start(service, workers=1, extra_env=otel_env(receiver))
        yield stack
    finally:
        stack.close()


@pytest.fixture
def arrange(traced: LiveStack) -> Arrange:
    return Arrange(traced)
