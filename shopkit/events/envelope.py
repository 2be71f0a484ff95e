"""The envelope every event travels in: CloudEvents 1.0, structured JSON mode.

One stream entry holds one field, ``event``, whose value is the whole
CloudEvent as JSON (``application/cloudevents+json``): ``id``, ``source``,
``type`` (``shop.order.shipped.v1``), ``subject`` (the aggregate's id),
``time`` (when the change committed), ``datacontenttype`` and ``data``. Two
extensions ride along:

- ``sequence``: the event's position among its aggregate's events (1, 2, ...),
  as the CloudEvents sequence extension defines it (a string);
- ``traceparent``: the W3C trace context of the request that made the change,
  when tracing is on, so the consumer's span continues that trace
  (:func:`consumer_span`).

The ``cloudevents`` SDK builds and parses the envelope, so its required
attributes and extension names are checked by the reference implementation.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from opentelemetry import propagate, trace
from opentelemetry.context import Context

from shopkit.telemetry import tracing_enabled

CONTENT_TYPE = JSONFormat.CONTENT_TYPE
DATA_CONTENT_TYPE = "application/json"
#: The stream entry's only field.
FIELD = "event"

_FORMAT = JSONFormat()


class MalformedEvent(ValueError):
    """A stream entry that is not a CloudEvent this library can read."""


@dataclass(frozen=True)
class Event:
    """One event as a handler sees it."""

    id: str
    source: str
    type: str
    subject: str
    time: datetime
    data: Mapping[str, Any]
    sequence: int | None = None
    traceparent: str | None = None

    @property
    def aggregate(self) -> str:
        """The aggregate kind, from the type (``order`` in ``shop.order.shipped.v1``)."""
        return self.type.split(".")[1]


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or ``None`` (tracing off or no span)."""
    if not tracing_enabled():
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def new_event_id() -> uuid.UUID:
    """A fresh event id (the consumer's deduplication key, fixed once at emit time)."""
    return uuid.uuid4()


def encode(event: Event) -> bytes:
    """``event`` as a structured-mode CloudEvent (JSON bytes)."""
    attributes: dict[str, Any] = {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "time": event.time,
        "datacontenttype": DATA_CONTENT_TYPE,
    }
    if event.sequence is not None:
        attributes["sequence"] = str(event.sequence)
    if event.traceparent:
        attributes["traceparent"] = event.traceparent
    return _FORMAT.write(CloudEvent(attributes, dict(event.data)))


def decode(raw: bytes | str) -> Event:
    """Read a structured-mode CloudEvent; :class:`MalformedEvent` if it is not one of ours."""
    try:
        cloud_event = _FORMAT.read(None, raw)
    except (ValueError, TypeError, KeyError, json.JSONDecodeError) as error:
        raise MalformedEvent(f"not a CloudEvent: {error}") from error
    except Exception as error:  # the SDK's validation errors share no base with ValueError
        raise MalformedEvent(f"invalid CloudEvent: {error}") from error
    data = cloud_event.get_data()
    if not isinstance(data, Mapping):
        raise MalformedEvent("the event's data is not a JSON object")
    attributes = cloud_event.get_attributes()
    sequence = attributes.get("sequence")
    moment = cloud_event.get_time() or datetime.now(UTC)
    try:
        event_id = str(uuid.UUID(cloud_event.get_id()))
    except ValueError as error:
        raise MalformedEvent(f"the event id is not a UUID: {cloud_event.get_id()!r}") from error
    try:
        return Event(
            id=event_id,
            source=cloud_event.get_source(),
            type=cloud_event.get_type(),
            subject=cloud_event.get_subject() or "",
            time=moment,
            data=data,
            sequence=int(sequence) if sequence is not None else None,
            traceparent=attributes.get("traceparent"),
        )
    except ValueError as error:
        raise MalformedEvent(f"invalid sequence: {sequence!r}") from error


def _producer_context(event: Event) -> Context:
    """The trace context ``event`` carries (its ``traceparent``), or an empty one."""
    return propagate.extract({"traceparent": event.traceparent} if event.traceparent else {})


def _link(event: Event) -> trace.Link | None:
    context = trace.get_current_span(_producer_context(event)).get_span_context()
    return trace.Link(context) if context.is_valid else None


@contextmanager
def _batch_span(
    name: str, kind: trace.SpanKind, events: list[Event], attributes: dict[str, Any]
) -> Iterator[None]:
    """One span for a batch of events, linked to each event's trace (tracing on)."""
    if not tracing_enabled():
        yield
        return
    links = [link for link in map(_link, events) if link is not None]
    tracer = trace.get_tracer("shopkit.events")
    with tracer.start_as_current_span(
        name,
        kind=kind,
        links=links,
        attributes={
            "messaging.system": "valkey",
            "messaging.batch.message_count": len(events),
            **attributes,
        },
    ):
        yield


def publish_span(events: list[Event], streams: list[str]) -> AbstractContextManager[None]:
    """One span for a relay's batch of events sent to the broker, linked to each event's
    trace (tracing on): in Jaeger, how long each event waited in the outbox after its
    request committed, and the batch's marking SQL beneath it."""
    destinations = sorted(set(streams))
    attributes: dict[str, Any] = {"messaging.operation.type": "send"}
    name = "publish"
    if len(destinations) == 1:
        attributes["messaging.destination.name"] = destinations[0]
        name = f"{destinations[0]} publish"
    return _batch_span(name, trace.SpanKind.PRODUCER, events, attributes)


def consumer_batch_span(events: list[Event], group: str) -> AbstractContextManager[None]:
    """One span for a batch of events a group applies, linked to each producer's trace
    (tracing on)."""
    attributes = {"messaging.operation.type": "process", "messaging.consumer.group.name": group}
    return _batch_span(f"{group} process", trace.SpanKind.CONSUMER, events, attributes)


@contextmanager
def consumer_span(event: Event, group: str) -> Iterator[None]:
    """A consumer span for handling ``event``, continuing the producer's trace if it has one."""
    if not tracing_enabled():
        yield
        return
    tracer = trace.get_tracer("shopkit.events")
    with tracer.start_as_current_span(
        f"{event.type} process",
        context=_producer_context(event),
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "valkey",
            "messaging.operation.type": "process",
            "messaging.consumer.group.name": group,
            "messaging.message.id": event.id,
            "cloudevents.event_type": event.type,
            "cloudevents.event_subject": event.subject,
        },
    ):
        yield
