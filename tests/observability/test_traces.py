"""A purchase is one trace across sales, inventory and customers (real processes, real exporter).

The services run under gunicorn with the OTLP/HTTP exporter pointed at a
receiver in the test (:mod:`tests.observability.receiver`), so what is checked
is exactly what Jaeger would get.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest
import requests

from shopkit.config import PROJECT_ROOT
from shopkit.telemetry import tracing_requested
from tests.observability.receiver import OtlpReceiver, Span
from tests.support.identity import bearer
from tests.support.live import LiveStack
from tests.support.tracing import Arrange, otel_env, traceparent

pytestmark = pytest.mark.processes

RESERVE = ("inventory", "POST /internal/reservations")
DEBIT = ("customers", "POST /internal/wallet-debits")


def one(spans: list[Span], service: str, name: str) -> Span:
    found = [s for s in spans if (s.service, s.name) == (service, name)]
    assert len(found) == 1, sorted((s.service, s.name) for s in spans)
    return found[0]


def ancestors(span: Span, spans: list[Span]) -> list[Span]:
    index = {s.span_id: s for s in spans}
    chain = []
    while span.parent_id in index:
        span = index[span.parent_id]
        chain.append(span)
    return chain


def trace_of(receiver: OtlpReceiver, root: tuple[str, str], *needed: tuple[str, str]) -> list[Span]:
    """The spans of the newest trace whose root is ``root``, once it has every span in ``needed``."""

    def newest_root(spans: list[Span]) -> Span | None:
        roots = [s for s in spans if (s.service, s.name) == root and s.parent_id is None]
        return max(roots, key=lambda s: s.start_ns, default=None)

    def complete(spans: list[Span]) -> bool:
        found = newest_root(spans)
        if found is None:
            return False
        names = {(s.service, s.name) for s in spans if s.trace_id == found.trace_id}
        return set(needed) <= names

    found = newest_root(receiver.wait_for(complete))
    assert found is not None
    return receiver.trace(found.trace_id)


def recovery_trace(receiver: OtlpReceiver, sale_id: str) -> list[Span]:
    """The spans of the recovery pass that completed ``sale_id`` (customers answered it)."""

    def completing(spans: list[Span]) -> str | None:
        # A pass that ran while customers was still starting may have reached it and
        # timed out (debit ``unavailable``, the sale still pending): not that one.
        for span in spans:
            if (
                (span.service, span.name) == ("sales", "saga.debit")
                and span.attributes.get("shop.sale_id") == sale_id
                and span.attributes.get("shop.saga.outcome") == "ok"
            ):
                names = {(s.service, s.name) for s in spans if s.trace_id == span.trace_id}
                if {("sales", "recovery pass"), ("sales", "saga.reserve"), RESERVE, DEBIT} <= names:
                    return span.trace_id
        return None

    found = completing(receiver.wait_for(lambda spans: completing(spans) is not None))
    assert found is not None
    return receiver.trace(found)


def test_one_purchase_is_one_trace_across_three_services(
    traced: LiveStack, receiver: OtlpReceiver, arrange: Arrange
) -> None:
    product = arrange.product(price="12.50")
    _, token = arrange.buyer()
    bought = arrange.buy(token, product, 2)
    assert bought.status_code == 201, bought.text
    sale_id = bought.json()["id"]

    spans = trace_of(
        receiver,
        ("sales", "POST /sales"),
        ("sales", "saga.reserve"),
        ("sales", "saga.debit"),
        RESERVE,
        DEBIT,
    )
    sale = one(spans, "sales", "POST /sales")
    assert sale.kind == "server" and sale.parent_id is None
    assert {s.service for s in spans} == {"sales", "inventory", "customers"}

    for step, callee_name in (("reserve", RESERVE), ("debit", DEBIT)):
        # The step's span: under POST /sales, with the sale, the step and its outcome.
        step_span = one(spans, "sales", f"saga.{step}")
        assert step_span.parent_id == sale.span_id
        assert step_span.attributes["shop.sale_id"] == sale_id
        assert step_span.attributes["shop.saga.step"] == step
        assert step_span.attributes["shop.saga.outcome"] == "ok"
        assert step_span.attributes["shop.idempotent_replayed"] is False
        # The callee's server span hangs off sales' HTTP client span inside the step.
        callee = one(spans, *callee_name)
        client = next(s for s in spans if s.span_id == callee.parent_id)
        assert (client.service, client.kind) == ("sales", "client")
        assert client.parent_id == step_span.span_id
        assert sale in ancestors(callee, spans)
        assert "shop.idempotent_replayed" not in callee.attributes
        # The callee's SQL runs beneath its server span.
        sql = [s for s in spans if s.parent_id == callee.span_id and "db.system" in s.attributes]
        assert sql and all(s.service == callee.service for s in sql)
    # Steps follow one another in time; the sale's own SQL is in the trace too.
    assert one(spans, "sales", "saga.reserve").end_ns <= one(spans, "sales", "saga.debit").start_ns
    assert any(s.service == "sales" and s.attributes.get("db.system") for s in spans)

    # Every JSON log line of the request carries the trace id.
    lines = [json.loads(x) for x in traced.logs("sales").splitlines() if x.startswith("{")]
    access = [x for x in lines if x.get("path") == "/sales" and x.get("status") == 201]
    assert access and access[-1]["trace_id"] == sale.trace_id


def test_recovery_is_a_trace_of_its_own_and_replays_are_marked(
    traced: LiveStack, receiver: OtlpReceiver, arrange: Arrange
) -> None:
    product = arrange.product()
    _, token = arrange.buyer()
    assert arrange.buy(token, product).status_code == 201  # warms sales' token and key caches
    sale_id = arrange.stuck_then_recovered(token, product)

    # The stuck purchase: reserve ok, debit unavailable, the trace ends there.
    stuck = [
        s
        for s in receiver.snapshot()
        if s.name == "saga.debit" and s.attributes.get("shop.sale_id") == sale_id
        and s.attributes.get("shop.saga.outcome") == "unavailable"
        and s.attributes.get("shop.attempt") == 1
    ]  # fmt: skip
    assert len(stuck) == 1
    assert one(receiver.trace(stuck[0].trace_id), "sales", "POST /sales").parent_id is None

    # Recovery drove it in a trace of its own: reserve was replayed by inventory.
    spans = recovery_trace(receiver, sale_id)
    assert stuck[0].trace_id != spans[0].trace_id
    recovery = one(spans, "sales", "recovery pass")
    assert recovery.attributes["shop.recovery.completed"] == 1
    reserve = one(spans, "sales", "saga.reserve")
    assert reserve.parent_id == recovery.span_id
    assert reserve.attributes["shop.sale_id"] == sale_id
    assert reserve.attributes["shop.idempotent_replayed"] is True
    assert reserve.attributes["shop.attempt"] >= 2  # a pass may have run while customers was down
    replayed = one(spans, *RESERVE)
    assert replayed.attributes["shop.idempotent_replayed"] is True
    client = next(s for s in spans if s.span_id == replayed.parent_id)
    assert client.attributes["shop.idempotent_replayed"] is True
    debit = one(spans, "sales", "saga.debit")
    assert debit.attributes["shop.saga.outcome"] == "ok"
    # Replayed only if an earlier pass's debit reached customers (committed there, then
    # timed out in sales while customers was still starting up).
    reached = any(
        DEBIT in {(x.service, x.name) for x in receiver.trace(s.trace_id)}
        for s in receiver.snapshot()
        if s.name == "saga.debit" and s.attributes.get("shop.sale_id") == sale_id
        and s.attributes.get("shop.saga.outcome") == "unavailable"
    )  # fmt: skip
    assert debit.attributes["shop.idempotent_replayed"] is reached


def test_an_idle_service_sends_no_traces(
    traced: LiveStack, receiver: OtlpReceiver, arrange: Arrange
) -> None:
    """Probes, scrapes and idle recovery polls make no spans (they would bury the purchases)."""
    time.sleep(1.5)  # let spans of earlier requests arrive
    before = len(receiver.snapshot())
    for service in ("customers", "inventory", "sales"):
        for path in ("/healthz", "/readyz", "/metrics"):
            assert requests.get(traced.url(service) + path, timeout=10).status_code == 200
    time.sleep(2.0)  # four recovery polls and two export intervals
    assert receiver.snapshot()[before:] == []


def test_tracing_is_off_without_otel_variables() -> None:
    assert not tracing_requested({})
    assert not tracing_requested({"OTEL_SERVICE_NAME": "sales", "OTEL_TRACES_SAMPLER": "always_on"})
    assert not tracing_requested(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}
    )
    assert not tracing_requested(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}
    )
    assert tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing_requested({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert tracing_requested({"OTEL_TRACES_EXPORTER": "otlp"})

    # A service built with no OTEL_* set loads neither the tracing SDK nor an exporter:
    # nothing could export. (The broker's client, redis-py, imports the SDK's metrics
    # part for its own optional instrumentation; no tracer provider comes with it.)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    probe = (
        "import sys\n"
        "from opentelemetry import trace\n"
        "from inventory_service import create_app\n"
        "app = create_app()\n"
        "print(type(trace.get_tracer_provider()).__name__,"
        " sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk.trace', 'opentelemetry.exporter'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert done.stdout.split()[:2] == ["ProxyTracerProvider", "[]"], done.stdout + done.stderr


def test_otel_traces_exporter_none_sends_nothing(database_url: str, traced: LiveStack) -> None:
    silent = OtlpReceiver().start()
    try:
        env = {**otel_env(silent), "OTEL_TRACES_EXPORTER": "none"}
        process = traced.start("reviews", workers=1, extra_env=env)
        for _ in range(5):
            requests.get(process.url + "/reviews", params={"product_id": 1}, timeout=10)
        time.sleep(1.0)  # ten export intervals
        assert silent.requests == 0
    finally:
        traced.processes["reviews"].stop()
        silent.stop()


def test_a_batch_traces_each_sales_sql_but_not_its_savepoints(
    traced: LiveStack, receiver: OtlpReceiver, arrange: Arrange
) -> None:
    """A batch's per-sale savepoints are transaction control, untraced like BEGIN and COMMIT."""
    scarce, plenty = arrange.product(stock=1), arrange.product(stock=10)
    sales = [str(uuid.uuid4()) for _ in range(3)]
    wanted = [(plenty, 2), (scarce, 1), (scarce, 1)]  # the third is refused: rolled back
    items = [
        {"idempotency_key": f"{sale}:reserve",
         "request": {"sale_id": sale, "product_id": product, "quantity": quantity}}
        for sale, (product, quantity) in zip(sales, wanted, strict=True)
    ]  # fmt: skip
    answer = arrange.call(
        "inventory",
        "POST",
        "/internal/reservations/batch",
        json={"items": items},
        headers=bearer(traced.service_token("sales")),
    )
    assert answer.status_code == 200, answer.text
    assert [r["status"] for r in answer.json()["results"]] == [201, 201, 409]

    spans = trace_of(receiver, ("inventory", "POST /internal/reservations/batch"))
    server = one(spans, "inventory", "POST /internal/reservations/batch")
    sql = [s for s in spans if s.parent_id == server.span_id and "db.system" in s.attributes]
    statements = [str(s.attributes.get("db.statement", s.name)).lstrip() for s in sql]
    # The keys' lookup, then each sale's reservation and the claims of its key (the
    # refused one's too: a refusal is stored like a success).
    assert len(statements) >= 1 + len(items) * 2, statements
    assert not [s for s in statements if s.upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK"))]


def test_a_purchase_its_caller_did_not_sample_makes_no_span_anywhere(
    traced: LiveStack, receiver: OtlpReceiver, arrange: Arrange
) -> None:
    """An unsampled request runs with the instrumentation suppressed beneath its server span,
    yet still sends ``traceparent`` on: the services it calls follow the decision instead of
    starting sampled traces of their own."""
    product = arrange.product(price="3.00")
    _, token = arrange.buyer()
    # A sales just started: the purchase's call fetches its service token, in a thread of
    # its own that follows the purchase's decision too.
    restart_sales(traced, receiver)
    time.sleep(1.0)  # let spans of the arrangement arrive
    before = len(receiver.snapshot())
    trace_id = uuid.uuid4().hex
    unsampled = traceparent(trace_id, sampled=False)
    bought = arrange.buy(token, product, key=uuid.uuid4().hex, traceparent=unsampled)
    assert bought.status_code == 201, bought.text
    time.sleep(1.5)  # fifteen export intervals
    assert receiver.snapshot()[before:] == []
    # The same purchase, sampled, is traced across the three services as usual.
    sampled = traceparent(trace_id, sampled=True)
    again = arrange.buy(token, product, key=uuid.uuid4().hex, traceparent=sampled)
    assert again.status_code == 201, again.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        services = {s.service for s in receiver.snapshot()[before:] if s.trace_id == trace_id}
        if services == {"sales", "inventory", "customers"}:
            break
        time.sleep(0.1)
    assert services == {"sales", "inventory", "customers"}


def restart_sales(traced: LiveStack, receiver: OtlpReceiver) -> None:
    """Sales started again, tracing to ``receiver``: no service token, no key cached."""
    traced.stop("sales")
    traced.start("sales", workers=1, extra_env=otel_env(receiver))


def test_a_sales_just_started_fetches_its_service_token_within_the_first_purchase_trace(
    traced: LiveStack, receiver: OtlpReceiver, arrange: Arrange
) -> None:
    product = arrange.product(price="2.50")
    _, token = arrange.buyer()
    restart_sales(traced, receiver)
    trace_id = uuid.uuid4().hex
    started_ns = time.time_ns()
    bought = arrange.buy(token, product, traceparent=traceparent(trace_id, sampled=True))
    assert bought.status_code == 201, bought.text

    def fetched(spans: list[Span]) -> bool:
        return any(s.name == "POST /auth/service-token" for s in spans if s.trace_id == trace_id)

    receiver.wait_for(fetched)
    time.sleep(0.5)  # five export intervals: a grant in a trace of its own would be here too
    grants = [
        s for s in receiver.snapshot()
        if s.name == "POST /auth/service-token" and s.start_ns >= started_ns
    ]  # fmt: skip
    assert {s.trace_id for s in grants} == {trace_id}
    assert {s.service for s in grants} == {"customers"}
    # Beneath the purchase's own span in sales: the fetch is part of the request.
    spans = receiver.trace(trace_id)
    purchase = one(spans, "sales", "POST /sales")
    assert all(purchase in ancestors(grant, spans) for grant in grants)


def test_a_purchase_not_sampled_where_it_starts_makes_no_span_in_any_service(
    traced: LiveStack, receiver: OtlpReceiver, arrange: Arrange
) -> None:
    """Sales keeping no trace (ratio 0) decides before its instrumentation runs, and its calls
    still carry that decision: inventory and customers, which would keep every trace they
    start, record nothing for the purchase."""
    product = arrange.product(price="2.00")
    _, token = arrange.buyer()
    never = {**otel_env(receiver), "OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}
    never["OTEL_TRACES_SAMPLER_ARG"] = "0"
    traced.processes.pop("sales").stop()
    try:
        traced.start("sales", workers=1, extra_env=never)
        time.sleep(1.0)  # let spans of the arrangement arrive
        before = len(receiver.snapshot())
        bought = arrange.buy(token, product, 1)
        assert bought.status_code == 201, bought.text
        time.sleep(1.5)  # fifteen export intervals
        assert receiver.snapshot()[before:] == []
        lines = [json.loads(x) for x in traced.logs("sales").splitlines() if x.startswith("{")]
        access = [x for x in lines if x.get("path") == "/sales" and x.get("status") == 201]
        assert access and re.fullmatch(r"[0-9a-f]{32}", access[-1]["trace_id"] or "")
    finally:
        traced.processes.pop("sales").stop()
        traced.start("sales", workers=1, extra_env=otel_env(receiver))
