"""The envelope (CloudEvents 1.0), the catalogue's schemas, trace propagation and AsyncAPI."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime

import jsonschema
import pytest
from flask import Flask
from opentelemetry import context, propagate

from shopkit.events import asyncapi, envelope
from shopkit.events.catalog import CATALOG, EVENT_TYPES, stream_for, validate_data
from shopkit.events.envelope import Event, MalformedEvent, decode, encode
from shopkit.events.outbox import emit
from tests.events import tables
from tests.support.events import drain

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _event(**overrides) -> Event:
    values = {
        "id": str(uuid.uuid4()),
        "source": "/sales",
        "type": "shop.order.shipped.v1",
        "subject": "o-1",
        "time": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "data": {"order_id": "o-1"},
        "sequence": 4,
        "traceparent": TRACEPARENT,
    }
    return Event(**{**values, **overrides})


def test_the_envelope_is_a_structured_cloudevent() -> None:
    event = _event()
    document = json.loads(encode(event))
    assert document["specversion"] == "1.0"
    assert document["datacontenttype"] == "application/json"
    assert document["time"] == "2026-01-02T03:04:05Z"
    assert document["sequence"] == "4"
    assert document["traceparent"] == TRACEPARENT
    assert decode(encode(event)) == event


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        json.dumps(
            {"specversion": "1.0", "id": "not-a-uuid", "source": "/s", "type": "t", "data": {}}
        ),
        json.dumps(
            {
                "specversion": "1.0",
                "id": str(uuid.uuid4()),
                "source": "/s",
                "type": "t",
                "data": [1],
            }
        ),
        json.dumps({"specversion": "1.0", "id": str(uuid.uuid4()), "type": "t", "data": {}}),
    ],
    ids=["not-json", "id-not-a-uuid", "data-not-an-object", "no-source"],
)
def test_what_is_not_one_of_our_cloudevents_is_malformed(raw) -> None:
    with pytest.raises(MalformedEvent):
        decode(raw)


def test_every_type_has_a_valid_schema_and_a_conventional_name() -> None:
    assert len(CATALOG) == len(EVENT_TYPES) == 22
    for name, event_type in CATALOG.items():
        assert re.fullmatch(r"shop\.[a-z]+\.[a-z_]+\.v\d+", name)
        jsonschema.Draft202012Validator.check_schema(event_type.schema)
    with pytest.raises(jsonschema.ValidationError):
        validate_data(
            "shop.wallet.debited.v1", {"customer_id": 1, "amount": "1.5", "balance": "0.00"}
        )
    with pytest.raises(jsonschema.ValidationError):
        validate_data(
            "shop.order.cancelled.v1", {"order_id": str(uuid.uuid4()), "customer_id": 1, "x": 1}
        )


def test_the_trace_continues_from_the_producer_into_the_consumer(
    monkeypatch, sessions, relay, make_consumer
) -> None:
    monkeypatch.setattr(envelope, "tracing_enabled", lambda: True)
    seen: list[str | None] = []
    token = context.attach(propagate.extract({"traceparent": TRACEPARENT}))
    try:
        with sessions() as session, session.begin():
            order_id = str(uuid.uuid4())
            emit(session, tables.outbox, "shop.order.delivered.v1", order_id,
                 {"order_id": order_id, "customer_id": 1})  # fmt: skip
    finally:
        context.detach(token)
    relay.publish_once()
    consumer = make_consumer(
        "traced",
        [stream_for("order")],
        handler=lambda _s, _e: seen.append(envelope.current_traceparent()),
    )
    drain(consumer, until=lambda: bool(seen))
    assert seen[0] is not None
    assert seen[0].split("-")[1] == TRACEPARENT.split("-")[1], (
        "the consumer runs in the producer's trace"
    )


def _resolve(document: dict, ref: str) -> object:
    node: object = document
    for part in ref.removeprefix("#/").split("/"):
        assert isinstance(node, dict) and part in node, f"dangling $ref {ref}"
        node = node[part]
    return node


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_the_asyncapi_document_describes_channels_messages_and_operations() -> None:
    document = asyncapi.build_document("sales", "1.0.0", emits=["order"], consumes=["product"])
    assert document["asyncapi"] == "3.0.0"
    assert document["channels"]["order"]["address"] == "events:order"
    assert document["operations"]["send_order_events"]["action"] == "send"
    assert document["operations"]["receive_product_events"]["action"] == "receive"
    assert set(document["components"]["messages"]) == {
        name for name, t in CATALOG.items() if t.aggregate in ("order", "product")
    }
    refs = _refs(document)
    assert refs
    for ref in refs:
        _resolve(document, ref)
    # The message payload validates a real envelope.
    payload = document["components"]["messages"]["shop.order.shipped.v1"]["payload"]
    data_schema = document["components"]["schemas"]["shop.order.shipped.v1"]
    order_id = str(uuid.uuid4())
    shipped = json.loads(encode(_event(data={"order_id": order_id, "customer_id": 3, "carrier": "DHL",
                                              "tracking_number": "T"})))  # fmt: skip
    resolved = json.loads(json.dumps(payload).replace(
        '{"$ref": "#/components/schemas/shop.order.shipped.v1"}', json.dumps(data_schema)))  # fmt: skip
    jsonschema.Draft7Validator(resolved).validate(shipped)
    with pytest.raises(ValueError, match="no event types"):
        asyncapi.build_document("x", "1", emits=["spaceship"])


def test_a_service_serves_its_asyncapi_document() -> None:
    app = Flask("emitter")
    document = asyncapi.build_document("inventory", "1.0.0", emits=["product"])
    asyncapi.serve(app, document)
    response = app.test_client().get("/asyncapi.json")
    assert response.status_code == 200
    assert response.get_json() == document
