"""An order's events carry its trace through the relay and the broker into the consumers.

Customers, inventory and sales run with a broker, each relaying its outbox; the
notifications worker consumes the order and wallet events, and reviews the order
events in its own workers. All of them export their spans to the receiver in the
test, as they would to Jaeger.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from devstack import broker as embedded_broker
from tests.observability.receiver import OtlpReceiver, Span
from tests.support.database import mailsink
from tests.support.events import outboxes_from_now
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, SERVICE_SECRET
from tests.support.live import LiveStack, stop_live_relays
from tests.support.notifications import worker_from_now
from tests.support.tracing import Arrange, otel_env, traceparent

pytestmark = pytest.mark.processes

#: The services whose outboxes a purchase writes (each relays its own in its worker).
EMITTERS = ("customers", "inventory", "sales")
#: A service that consumes the order events in its own workers (verified purchases).
IN_SERVICE_CONSUMER = "reviews"


@pytest.fixture(scope="module")
def evented(
    database_url: str,
    receiver: OtlpReceiver,
    broker: embedded_broker.Broker,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveStack]:
    """The saga's services, traced, relaying their events; reviews, consuming the order
    events in its workers; and the notifications worker."""
    stack = LiveStack(
        database_url, (ADMIN_USERNAME, ADMIN_PASSWORD), SERVICE_SECRET, events_url=broker.url
    )
    for service in (*EMITTERS, IN_SERVICE_CONSUMER):
        # Another live stack's relay would hold the outbox's lease and publish to its broker.
        stop_live_relays(service)
    # What earlier files left in the outboxes would be published first, ahead of this test.
    outboxes_from_now(database_url, EMITTERS)
    sink = mailsink.start(tmp_path_factory.mktemp("mail"))
    try:
        for service in (*EMITTERS, IN_SERVICE_CONSUMER):
            stack.start(service, workers=1, extra_env=otel_env(receiver))
        log = stack.log_dir / "notifications-worker.log"
        with worker_from_now(stack, sink.url, log, **otel_env(receiver)):
            yield stack
    finally:
        stack.close()
        sink.stop()


def _linked(spans: list[Span], trace_id: str, service: str = "notifications") -> list[Span]:
    """``service``'s spans that link to ``trace_id``."""
    return [span for span in spans if span.service == service and trace_id in span.links]


def _sql_beneath(span: Span, spans: list[Span]) -> list[str]:
    """The statements of the SQL spans whose parent is ``span``, on one line each."""
    return [
        " ".join(str(s.attributes.get("db.statement", s.name)).split())
        for s in spans
        if s.parent_id == span.span_id and s.attributes.get("db.system") == "postgresql"
    ]


def test_relays_and_consumers_link_their_batches_to_the_purchase_trace_with_their_sql_beneath(
    evented: LiveStack, receiver: OtlpReceiver
) -> None:
    arrange = Arrange(evented)
    product = arrange.product(price="4.00")
    _, token = arrange.buyer()
    trace_id = uuid.uuid4().hex
    sampled = traceparent(trace_id, sampled=True)
    bought = arrange.buy(token, product, key=uuid.uuid4().hex, traceparent=sampled)
    assert bought.status_code == 201, bought.text

    # Sales' relay sent the order's events in a producer span linked to the purchase's trace,
    # and marked them beneath it.
    spans = receiver.wait_for(lambda spans: bool(_linked(spans, trace_id, "sales")), timeout_s=30)
    for span in _linked(spans, trace_id, "sales"):
        assert (span.kind, span.name) == ("producer", "events:order publish")
        assert span.attributes["messaging.destination.name"] == "events:order"
        assert span.attributes["messaging.operation.type"] == "send"
        sql = _sql_beneath(span, spans)
        assert any(q.startswith("UPDATE sales.outbox SET published_at") for q in sql), sql
        purchase = min(s.start_ns for s in spans if s.trace_id == trace_id)
        assert span.start_ns > purchase
    spans = receiver.wait_for(lambda spans: bool(_linked(spans, trace_id)), timeout_s=30)
    for span in _linked(spans, trace_id):
        assert span.kind == "consumer"
        assert span.name == "notifications process"
        assert span.attributes["messaging.system"] == "valkey"
        assert span.attributes["messaging.consumer.group.name"] == "notifications"
        assert span.attributes["messaging.batch.message_count"] >= 1
        # The batch's SQL is beneath its span: the inbox rows, the handler's notifications
        # and mails.
        sql = _sql_beneath(span, spans)
        assert any(q.startswith("INSERT INTO notifications.inbox") for q in sql), sql
        assert any(q.startswith("INSERT INTO notifications.notifications") for q in sql), sql
        assert any(q.startswith("INSERT INTO notifications.mails") for q in sql), sql
    # A consumer in a service's workers (reviews' verified purchases) traces its batches
    # and their SQL the same way.
    spans = receiver.wait_for(
        lambda spans: bool(_linked(spans, trace_id, IN_SERVICE_CONSUMER)), timeout_s=30
    )
    for span in _linked(spans, trace_id, IN_SERVICE_CONSUMER):
        assert (span.kind, span.name) == ("consumer", "reviews process")
        sql = _sql_beneath(span, spans)
        assert any(q.startswith("INSERT INTO reviews.inbox") for q in sql), sql
    # The purchase itself is in that trace, across the three services.
    services = {s.service for s in receiver.snapshot() if s.trace_id == trace_id}
    assert services == {"sales", "inventory", "customers"}
