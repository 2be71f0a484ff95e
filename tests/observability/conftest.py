"""Traced services: real gunicorn processes exporting OTLP/HTTP to a receiver in the test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, SERVICE_SECRET, bearer, customer_payload
from tests.observability.receiver import OtlpReceiver
from tests.support.live import LiveStack


def otel_env(receiver: OtlpReceiver) -> dict[str, str]:
    """What a traced service gets beside the test stack's usual environment."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: spans arrive quickly
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",  # every trace (the default keeps 10 %)
        "LOG_LEVEL": "INFO",
        "ACCESS_LOG": "all",
        "SALES_RECOVERY_INTERVAL": "0.5",  # recovery settles a stuck sale within seconds
        "SALES_RECOVERY_AFTER": "1",
    }


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
        stack.stop_all()


class Arrange:
    """Products and funded buyers made through the traced services' public API."""

    def __init__(self, stack: LiveStack) -> None:
        self.stack = stack
        self.admin = bearer(stack.token(ADMIN_USERNAME, ADMIN_PASSWORD))

    def call(self, service: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.stack.url(service) + path, timeout=15, **kwargs)

    def product(self, price: str = "10.00", stock: int = 10) -> int:
        response = self.call(
            "inventory",
            "POST",
            "/products",
            json={"name": "Lamp", "category": "electronics", "price": price, "description": "A lamp.",
                  "stock": stock},
            headers=self.admin,
        )  # fmt: skip
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def buyer(self, balance: str = "100.00") -> tuple[str, dict[str, str]]:
        payload = customer_payload()
        username, password = payload["username"], payload["password"]
        registered = self.call("customers", "POST", "/customers", json=payload)
        assert registered.status_code == 201, registered.text
        token = bearer(self.stack.token(username, password))
        if Decimal(balance) > 0:
            charged = self.call(
                "customers",
                "POST",
                f"/customers/{username}/wallet/charge",
                json={"amount": balance},
                headers=token,
            )
            assert charged.status_code == 200, charged.text
        return username, token

    def buy(
        self, token: dict[str, str], product_id: int, quantity: int = 1, key: str | None = None
    ) -> requests.Response:
        headers = {**token, **({"Idempotency-Key": key} if key else {})}
        return self.call(
            "sales",
            "POST",
            "/sales",
            json={"product_id": product_id, "quantity": quantity},
            headers=headers,
        )

    def stuck_then_recovered(self, token: dict[str, str], product_id: int) -> str:
        """A purchase left pending while customers is down, then settled by recovery.

        Returns the sale id once recovery completed it.
        """
        self.stack.kill("customers")
        try:
            stuck = self.buy(token, product_id)
            assert stuck.status_code == 503, stuck.text
            sale_id = str(stuck.json()["sale_id"])
        finally:
            self.stack.start(
                "customers", workers=1, extra_env=self.stack.processes["customers"].env
            )
        deadline = time.monotonic() + 20
        while True:
            sale = self.call("sales", "GET", f"/sales/{sale_id}", headers=token).json()
            if sale["status"] != "pending":
                assert sale["status"] == "completed", sale
                return sale_id
            assert time.monotonic() < deadline, f"recovery never settled {sale}"
            time.sleep(0.2)


@pytest.fixture
def arrange(traced: LiveStack) -> Arrange:
    return Arrange(traced)
