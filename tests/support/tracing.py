"""The observability tests' helpers: a traced service's environment, arranging sales."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from functools import partial
from typing import Any

import requests

from tests.observability.receiver import OtlpReceiver
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, bearer, customer_payload
from tests.support.live import LiveStack
from tests.support.products import create_product


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


def traceparent(trace_id: str, *, sampled: bool) -> str:
    """A W3C ``traceparent`` in trace ``trace_id`` (a new parent span id), sampled or not."""
    return f"00-{trace_id}-{uuid.uuid4().hex[:16]}-{'01' if sampled else '00'}"


class Arrange:
    """Products and funded buyers made through the traced services' public API."""

    def __init__(self, stack: LiveStack) -> None:
        self.stack = stack
        self.admin = bearer(stack.token(ADMIN_USERNAME, ADMIN_PASSWORD))

    def call(self, service: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.stack.url(service) + path, timeout=15, **kwargs)

    def product(self, price: str = "10.00", stock: int = 10) -> int:
        post = partial(self.call, "inventory", "POST", "/products")
        return int(create_product(post, self.admin, name="Lamp", price=price, stock=stock)["id"])

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
        self,
        token: dict[str, str],
        product_id: int,
        quantity: int = 1,
        key: str | None = None,
        traceparent: str | None = None,
    ) -> requests.Response:
        headers = {
            **token,
            **({"Idempotency-Key": key} if key else {}),
            **({"traceparent": traceparent} if traceparent else {}),
        }
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
