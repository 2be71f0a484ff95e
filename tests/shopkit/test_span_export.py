"""shopkit.span_export writes exactly the OTLP request the library's own encoder writes."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as library_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from shopkit.span_export import encode_spans


class Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def made_spans() -> list[ReadableSpan]:
    """Spans of every shape the services make, and a few they do not (links, events, arrays)."""
    kept = Keep()
    provider = TracerProvider(resource=Resource.create({"service.name": "sales", "n": 3}))
    provider.add_span_processor(SimpleSpanProcessor(kept))
    sales = provider.get_tracer(
        "shop.sales", "1.0", schema_url="https://opentelemetry.io/schemas/1.11.0"
    )
    sql = provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "x1"), ("other", "y")]),
    )
    parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    with sales.start_as_current_span("POST /sales", context=parent, kind=SpanKind.SERVER) as root:
        root.set_attributes({"http.method": "POST", "http.status_code": 201, "net.host.port": 5002})
        with sales.start_as_current_span(
            "saga.debit",
            attributes={
                "shop.sale_id": "4f1c",
                "shop.attempt": 1,
                "shop.idempotent_replayed": False,
            },
            links=[Link(remote, {"why": "retry"})],
        ) as step:
            step.set_attribute("shop.idempotent_replayed", True)
            step.set_attribute("ratio", -0.25)
            step.set_attribute("negative", -7)
            step.set_attribute("names", ["a", "b"])
            step.set_attribute("numbers", [1, 2, 3])
            step.set_attribute("flags", [True, False])
            step.add_event("retry", {"attempt": 2, "delay_s": 0.5})
            step.set_status(Status(StatusCode.ERROR, "unavailable"))
            for statement in ("SELECT 1", "SELECT 1", "INSERT INTO t VALUES (1)"):
                with sql.start_as_current_span(statement, kind=SpanKind.CLIENT) as query:
                    query.set_attribute("db.statement", statement)
                    query.set_attribute("db.system", "postgresql")
        with sales.start_as_current_span("ok") as done:
            done.set_status(Status(StatusCode.OK))
    return kept.spans


def decoded(data: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(data)
    return request


def test_the_same_request_as_the_library_encoder() -> None:
    spans = made_spans()
    assert len(spans) == 6
    expected = library_encode(spans)
    assert decoded(encode_spans(spans)) == expected
    # Twice: the second time the recurring attributes come from the cache.
    assert decoded(encode_spans(spans)) == expected
    # A batch of one and an empty batch as well.
    assert decoded(encode_spans(spans[:1])) == library_encode(spans[:1])
    assert encode_spans([]) == library_encode([]).SerializeToString() == b""


def test_true_and_one_stay_apart_in_the_cache() -> None:
    spans = made_spans()
    request = decoded(encode_spans(spans))
    values = {
        kv.key: kv.value
        for scope in request.resource_spans[0].scope_spans
        for span in scope.spans
        for kv in span.attributes
    }
    assert values["shop.idempotent_replayed"].bool_value is True
    assert values["shop.attempt"].WhichOneof("value") == "int_value"
    assert values["negative"].int_value == -7
