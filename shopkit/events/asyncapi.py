"""The AsyncAPI 3.0 document of a service's events, served at ``/asyncapi.json``.

Channels are streams (``events:order``), messages are event types with their
JSON Schemas from :mod:`shopkit.events.catalog`, and operations say what the
service does: ``send`` for the aggregates it emits, ``receive`` for the
streams its consumer groups read. Every message is a structured-mode
CloudEvent; its payload schema is the envelope, with ``data`` referring to the
type's own schema, so a reader of the document knows the whole entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Flask, Response, jsonify

from shopkit.events.catalog import EVENT_TYPES, EventType, stream_for
from shopkit.events.envelope import CONTENT_TYPE

ASYNCAPI_VERSION = "3.0.0"
PATH = "/asyncapi.json"


def _types_of(aggregate: str) -> list[EventType]:
    return [event_type for event_type in EVENT_TYPES if event_type.aggregate == aggregate]


def _data_schema(event_type: EventType) -> dict[str, Any]:
    # AsyncAPI's default schema format is its own superset of JSON Schema draft 07:
    # the 2020-12 dialect marker and the URN id stay out of it.
    return {k: v for k, v in event_type.schema.items() if k not in ("$schema", "$id")}


def _envelope(event_type: EventType) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["specversion", "id", "source", "type", "subject", "time", "data"],
        "properties": {
            "specversion": {"type": "string", "const": "1.0"},
            "id": {"type": "string", "format": "uuid", "description": "Deduplication key"},
            "source": {"type": "string", "description": "The emitting service (/sales)"},
            "type": {"type": "string", "const": event_type.name},
            "subject": {"type": "string", "description": f"The {event_type.aggregate}'s id"},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"type": "string", "const": "application/json"},
            "sequence": {
                "type": "string",
                "description": f"Position among this {event_type.aggregate}'s events (1, 2...)",
            },
            "traceparent": {"type": "string", "description": "W3C trace context"},
            "data": {"$ref": f"#/components/schemas/{event_type.name}"},
        },
    }


def _channel(aggregate: str) -> dict[str, Any]:
    return {
        "address": stream_for(aggregate),
        "title": f"{aggregate} events",
        "description": f"Every event of every {aggregate}, in commit order per {aggregate}.",
        "messages": {
            t.name: {"$ref": f"#/components/messages/{t.name}"} for t in _types_of(aggregate)
        },
    }


def _operation(action: str, aggregate: str) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{aggregate}"},
        "messages": [
            {"$ref": f"#/channels/{aggregate}/messages/{t.name}"} for t in _types_of(aggregate)
        ],
    }


def build_document(
    service: str,
    version: str,
    *,
    emits: Iterable[str] = (),
    consumes: Iterable[str] = (),
    broker_host: str = "localhost:6379",
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``service``: the aggregates it ``emits`` and ``consumes``."""
    emitted, consumed = sorted(set(emits)), sorted(set(consumes))
    aggregates = sorted({*emitted, *consumed})
    known = {event_type.aggregate for event_type in EVENT_TYPES}
    unknown = set(aggregates) - known
    if unknown:
        raise ValueError(f"no event types for aggregates {sorted(unknown)}")
    operations = {f"send_{a}_events": _operation("send", a) for a in emitted}
    operations |= {f"receive_{a}_events": _operation("receive", a) for a in consumed}
    types = [t for a in aggregates for t in _types_of(a)]
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": f"Shop {service} events",
            "version": version,
            "description": (
                "Events are CloudEvents 1.0 in structured JSON mode, one per stream entry "
                "(field `event`), published from a transactional outbox at least once; "
                "consumers deduplicate by event id."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "broker": {
                "host": broker_host,
                "protocol": "redis",
                "description": "Valkey streams with consumer groups (EVENTS_URL)",
            }
        },
        "channels": {a: _channel(a) for a in aggregates},
        "operations": operations,
        "components": {
            "messages": {
                t.name: {
                    "name": t.name,
                    "title": t.name,
                    "summary": t.summary,
                    "contentType": CONTENT_TYPE,
                    "payload": _envelope(t),
                }
                for t in types
            },
            "schemas": {t.name: _data_schema(t) for t in types},
        },
    }


def serve(app: Flask, document: dict[str, Any]) -> None:
    """Serve ``document`` at ``GET /asyncapi.json`` on ``app``."""

    def asyncapi() -> Response:
        return jsonify(document)

    app.add_url_rule(PATH, endpoint="asyncapi", view_func=asyncapi, methods=["GET"])
