"""The OTLP/HTTP span exporter with a cheaper encoder: the same request, a third of the CPU.

The exporter of ``opentelemetry-exporter-otlp-proto-http`` turns every span into
protobuf message objects (one per span, attribute, value...) and then
serialises them: about 60 µs of CPU per span, measured in bench/tracing_bench.py
as the largest single part of what tracing costs a sale (docs/observability.rst).
:func:`encode_spans` writes the same ``ExportTraceServiceRequest`` directly in
protobuf's wire format, and keeps the encoded form of recurring attributes
(``db.statement``, ``db.system``, ``http.route``... repeat in every trace) in a
bounded cache, so a span costs about a third of that.

:class:`OTLPSpanExporter` is the library's exporter (endpoint, headers,
timeout, compression, retries all from ``OTEL_EXPORTER_OTLP_*`` as before)
with only the encoding replaced; should the library's internals change, or its
own metrics be switched on, it falls back to the library's path unchanged.
``tests/shopkit/test_span_export.py`` checks the bytes decode to exactly what
the library's encoder produces.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as LibraryExporter,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind

_FIXED64 = struct.Struct("<Q").pack
_DOUBLE = struct.Struct("<d").pack
_FIXED32 = struct.Struct("<I").pack
#: SpanKind → the protobuf enum (SPAN_KIND_INTERNAL = 1 ...).
_KIND = {
    SpanKind.INTERNAL: b"\x30\x01",
    SpanKind.SERVER: b"\x30\x02",
    SpanKind.CLIENT: b"\x30\x03",
    SpanKind.PRODUCER: b"\x30\x04",
    SpanKind.CONSUMER: b"\x30\x05",
}
_HAS_IS_REMOTE = 0x100  # SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = 0x200  # SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_INTERNAL_METRICS_ENV = "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or embedded message)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _value(value: Any) -> bytes:  # noqa: PLR0911 (one return per AnyValue case)
    """An ``AnyValue`` message's body."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(1, value.encode())
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int64: two's complement
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(7, value)
    if isinstance(value, Sequence):
        return _field(5, b"".join(_field(1, _value(item)) for item in value))
    if isinstance(value, Mapping):
        return _field(6, b"".join(_field(1, _key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"invalid attribute value type {type(value).__name__}")


def _key_value(key: str, value: Any) -> bytes:
    return _field(1, key.encode()) + _field(2, _value(value))


@lru_cache(maxsize=4096)
def _cached_attribute(number: int, key: str, value: Any, _type: type) -> bytes:
    # ``_type`` keeps True and 1 (equal, same hash) apart.
    return _field(number, _key_value(key, value))


def _attributes(number: int, attributes: Mapping[str, Any] | None) -> bytes:
    """Repeated ``KeyValue`` field ``number``; scalar pairs come from the cache."""
    if not attributes:
        return b""
    parts = []
    for key, value in attributes.items():
        if isinstance(value, str | int):  # bool is an int; floats vary too much to be worth it
            parts.append(_cached_attribute(number, key, value, type(value)))
        else:
            parts.append(_field(number, _key_value(key, value)))
    return b"".join(parts)


def _count(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""


def _trace_state(trace_state: Any) -> str:
    return ",".join(f"{key}={value}" for key, value in trace_state.items()) if trace_state else ""


def _span(span: ReadableSpan) -> bytes:
    """One ``Span`` message (as its field in ``ScopeSpans``)."""
    context = span.get_span_context()
    assert context is not None
    parent = span.parent
    parts = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
    ]
    if state := _trace_state(context.trace_state):
        parts.append(_field(3, state.encode()))
    if parent is not None:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    parts.append(_field(5, span.name.encode()))
    parts.append(_KIND[span.kind])
    parts.append(b"\x39" + _FIXED64(span.start_time or 0) + b"\x41" + _FIXED64(span.end_time or 0))
    parts.append(_attributes(9, span.attributes))
    parts.append(_count(10, span.dropped_attributes))
    for event in span.events:
        body = (
            b"\x09"
            + _FIXED64(event.timestamp)
            + _field(2, event.name.encode())
            + _attributes(3, event.attributes)
            + _count(4, event.dropped_attributes)
        )
        parts.append(_field(11, body))
    parts.append(_count(12, span.dropped_events))
    for link in span.links:
        linked = link.context
        flags = _HAS_IS_REMOTE | (_IS_REMOTE if linked.is_remote else 0)
        body = (
            b"\x0a\x10"
            + linked.trace_id.to_bytes(16, "big")
            + b"\x12\x08"
            + linked.span_id.to_bytes(8, "big")
            + _attributes(4, link.attributes)
            + _count(5, link.dropped_attributes)
            + b"\x35"
            + _FIXED32(flags)
        )
        parts.append(_field(13, body))
    parts.append(_count(14, span.dropped_links))
    status = span.status
    code = status.status_code.value
    parts.append(
        _field(
            15,
            (_field(2, status.description.encode()) if status.description else b"")
            + (b"\x18" + _varint(code) if code else b""),
        )
    )
    flags = _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)
    parts.append(b"\x85\x01" + _FIXED32(flags))
    return _field(2, b"".join(parts))


def _scope(scope: Any) -> bytes:
    if scope is None:
        return _field(1, b"")
    body = _field(1, scope.name.encode()) if scope.name else b""
    if scope.version:
        body += _field(2, scope.version.encode())
    body += _attributes(3, getattr(scope, "attributes", None))
    return _field(1, body)


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """``ExportTraceServiceRequest`` bytes for ``spans``, grouped by resource and scope."""
    grouped: dict[Any, dict[Any, list[bytes]]] = {}
    for span in spans:
        by_scope = grouped.setdefault(span.resource, {})
        by_scope.setdefault(span.instrumentation_scope, []).append(_span(span))
    out = []
    for resource, scopes in grouped.items():
        body = [_field(1, _attributes(1, resource.attributes))]
        for scope, encoded in scopes.items():
            schema = scope.schema_url if scope is not None else None
            body.append(
                _field(
                    2,
                    _scope(scope)
                    + b"".join(encoded)
                    + (_field(3, schema.encode()) if schema else b""),
                )
            )
        if resource.schema_url:
            body.append(_field(3, resource.schema_url.encode()))
        out.append(_field(1, b"".join(body)))
    return b"".join(out)


class OTLPSpanExporter(LibraryExporter):
    """The library's OTLP/HTTP span exporter, encoding with :func:`encode_spans`."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Send ``spans`` as one request (retries and timeouts: the library's client)."""
        client = getattr(self, "_client", None)
        internal_metrics = os.environ.get(_INTERNAL_METRICS_ENV, "").strip().lower() == "true"
        if client is None or internal_metrics or getattr(self, "_shutdown", False):
            return super().export(spans)
        answer = client.export(encode_spans(spans))
        return SpanExportResult.SUCCESS if answer.success else SpanExportResult.FAILURE
