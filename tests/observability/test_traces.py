"""A purchase is one trace across sales, inventory and customers (real processes, real exporter)."""

from __future__ import annotations

import json

import pytest

from tests.observability.conftest import Arrange
from tests.observability.receiver import OtlpReceiver, Span
from tests.support.live import LiveStack

pytestmark = pytest.mark.processes


def by_id(spans: list[Span]) -> dict[str, Span]:
    return {s.span_id: s for s in spans}


def server_span(spans: list[Span], service: str, route: str) -> Span:
    found = [
        s for s in spans if s.service == service and s.kind == "server" and s.name.endswith(route)
    ]
    assert len(found) == 1, [(s.service, s.name) for s in spans]
    return found[0]


def test_one_purchase_is_one_trace_across_three_services(
    traced: LiveStack, receiver: OtlpReceiver, arrange: Arrange
) -> None:
    product = arrange.product(price="12.50")
    _, token = arrange.buyer()
    bought = arrange.buy(token, product, 2)
    assert bought.status_code == 201, bought.text
    sale_id = bought.json()["id"]

    # The POST /sales server span is the root; find its trace.
    root = receiver.wait_for(
        lambda spans: any(s.service == "sales" and s.name == "POST /sales" for s in spans)
    )
    trace_id = next(s.trace_id for s in root if s.service == "sales" and s.name == "POST /sales")

    def complete(spans: list[Span]) -> bool:
        names = {(s.service, s.name) for s in spans if s.trace_id == trace_id}
        return {
            ("inventory", "POST /internal/reservations"),
            ("customers", "POST /internal/wallet-debits"),
        } <= names

    receiver.wait_for(complete)
    spans = receiver.trace(trace_id)
    index = by_id(spans)
    sale = server_span(spans, "sales", "POST /sales")
    assert sale.parent_id is None
    status = sale.attributes.get(
        "http.response.status_code", sale.attributes.get("http.status_code")
    )
    assert status == 201

    for service, route in (
        ("inventory", "POST /internal/reservations"),
        ("customers", "POST /internal/wallet-debits"),
    ):
        callee = server_span(spans, service, route)
        # Its parent is sales' HTTP client span, itself beneath the POST /sales span.
        client = index[callee.parent_id]  # type: ignore[index]
        assert (client.service, client.kind) == ("sales", "client")
        ancestors = []
        cursor: Span | None = client
        while cursor is not None and cursor.parent_id:
            cursor = index.get(cursor.parent_id)
            if cursor is not None:
                ancestors.append(cursor)
        assert sale in ancestors
        # SQL ran beneath the callee's server span.
        sql = [
            s
            for s in spans
            if s.service == service
            and s.parent_id == callee.span_id
            and s.attributes.get("db.system") == "postgresql"
        ]
        assert sql, f"no SQL spans beneath {service}'s span"
        assert callee.attributes.get("shop.idempotent_replayed") is None

    # Every JSON log line of that request carries the trace id.
    sales_log = traced.logs("sales")
    lines = [json.loads(line) for line in sales_log.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("path") == "/sales" and line.get("status") == 201]
    assert access and access[-1]["trace_id"] == trace_id
    assert sale_id
