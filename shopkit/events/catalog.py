"""The catalogue of event types: each type's name, stream and JSON Schema.

A type is named ``shop.<aggregate>.<event>.v<version>`` (``shop.order.shipped.v1``).
All events of one aggregate kind go to one stream (``events:order``), so a
consumer reads one stream per aggregate kind it cares about and sees each
aggregate's events in the order they were committed.

The schemas describe the CloudEvent's ``data``. They are the contract between
the service that emits a type and the services that consume it, which is why
they live here in the shared library and not in the emitting service: a
consumer validates against the same document the producer was tested against,
and the AsyncAPI document (:mod:`shopkit.events.asyncapi`) is built from them.
A breaking change is a new version (``.v2``), published next to the old one
until every consumer has moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STREAM_PREFIX = "events:"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_MONEY = {"type": "string", "pattern": r"^-?\d{1,12}\.\d{2}$", "description": "Decimal amount"}
_UUID = {"type": "string", "format": "uuid"}
_ID = {"type": "integer", "minimum": 1}


class UnknownEventType(LookupError):
    """An event type that is not in the catalogue."""


@dataclass(frozen=True)
class EventType:
    """One event type: where it goes and what its ``data`` looks like."""

    aggregate: str
    event: str
    summary: str
    properties: Mapping[str, Any]
    required: tuple[str, ...]
    version: int = 1
    name: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", f"shop.{self.aggregate}.{self.event}.v{self.version}")

    @property
    def stream(self) -> str:
        """The stream this type is published to."""
        return stream_for(self.aggregate)

    @property
    def schema(self) -> dict[str, Any]:
        """The JSON Schema (2020-12) of this type's ``data``."""
        return {
            "$schema": JSON_SCHEMA_DIALECT,
            "$id": f"urn:shop:event:{self.name}",
            "title": self.name,
            "description": self.summary,
            "type": "object",
            "properties": dict(self.properties),
            "required": list(self.required),
            "additionalProperties": False,
        }


def stream_for(aggregate: str) -> str:
    """The stream that carries the events of ``aggregate`` (``events:order``)."""
    return f"{STREAM_PREFIX}{aggregate}"


def _order(event: str, summary: str, **extra: Any) -> EventType:
    properties = {"order_id": _UUID, "customer_id": _ID, **extra}
    return EventType("order", event, summary, properties, ("order_id", "customer_id", *extra))


def _wallet(event: str, summary: str) -> EventType:
    properties = {
        "customer_id": _ID,
        "amount": _MONEY,
        "balance": _MONEY,
        "order_id": {"type": ["string", "null"], "format": "uuid"},
    }
    return EventType("wallet", event, summary, properties, ("customer_id", "amount", "balance"))


#: A customer's contact data, personal data (docs/events.rst, "Personal data on the broker").
_CONTACT = {
    "customer_id": _ID,
    "username": {"type": "string", "minLength": 1, "maxLength": 32},
    "full_name": {"type": "string", "maxLength": 200},
    "email": {"type": "string", "format": "email", "maxLength": 254},
}


def _customer(event: str, summary: str, *, contact: bool) -> EventType:
    properties = _CONTACT if contact else {"customer_id": _ID}
    return EventType("customer", event, summary, properties, tuple(properties))


def _review(event: str, summary: str) -> EventType:
    properties = {
        "review_id": _ID,
        "product_id": _ID,
        "customer_id": _ID,
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
    }
    required = ("review_id", "product_id", "customer_id", "rating")
    return EventType("review", event, summary, properties, required)


#: An ordered line: placed before its price is known (inventory prices it when it reserves
#: the stock), so ``shop.order.placed.v1`` carries products and quantities only; the paid
#: total comes with ``shop.order.completed.v1``.
_LINE = {
    "type": "object",
    "properties": {
        "product_id": _ID,
        "quantity": {"type": "integer", "minimum": 1},
    },
    "required": ["product_id", "quantity"],
    "additionalProperties": False,
}

EVENT_TYPES: tuple[EventType, ...] = (
    _order(
        "placed",
        "A customer placed an order; payment and stock are not settled yet.",
        lines={"type": "array", "items": _LINE, "minItems": 1},
    ),
    _order("completed", "The order is paid and its stock reserved.", total=_MONEY),
    _order(
        "failed",
        "The order could not be completed; nothing was charged.",
        failure_code={"type": "string"},
    ),
    _order("cancelled", "The order was cancelled and refunded."),
    _order(
        "shipped",
        "The order left the warehouse.",
        carrier={"type": ["string", "null"]},
        tracking_number={"type": ["string", "null"]},
    ),
    _order("delivered", "The order reached the customer."),
    _wallet("credited", "Money was added to a customer's wallet."),
    _wallet("debited", "A purchase was paid from a customer's wallet."),
    _wallet("refunded", "A payment was returned to a customer's wallet."),
    EventType(
        "product",
        "stock_changed",
        "A product's stock level changed.",
        {
            "product_id": _ID,
            "stock": {"type": "integer", "minimum": 0},
            "delta": {"type": "integer"},
        },
        ("product_id", "stock", "delta"),
    ),
    EventType(
        "product",
        "created",
        "A product was added to the catalogue.",
        {"product_id": _ID, "name": {"type": "string"}, "price": _MONEY},
        ("product_id", "name", "price"),
    ),
    EventType(
        "product",
        "archived",
        "A product was withdrawn from sale.",
        {"product_id": _ID},
        ("product_id",),
    ),
    EventType(
        "product",
        "restored",
        "An archived product was put back on sale.",
        {"product_id": _ID},
        ("product_id",),
    ),
    _customer("registered", "A customer account was created.", contact=True),
    _customer("updated", "A customer's name or email changed.", contact=True),
    _customer("deactivated", "A customer account was deactivated.", contact=False),
    _customer("reactivated", "A deactivated customer account was reactivated.", contact=False),
    _review("submitted", "A customer wrote a review; it awaits moderation."),
    _review("approved", "A review was approved and is public."),
    _review("rejected", "A review was rejected by a moderator."),
    _review("flagged", "A moderator flagged a review; it is hidden until decided again."),
    _review("deleted", "A review was deleted by its author or an admin."),
)

CATALOG: dict[str, EventType] = {event_type.name: event_type for event_type in EVENT_TYPES}


def event_type(name: str) -> EventType:
    """The catalogued type called ``name``; :class:`UnknownEventType` if there is none."""
    try:
        return CATALOG[name]
    except KeyError:
        raise UnknownEventType(f"unknown event type {name!r}") from None


def validate_data(name: str, data: Mapping[str, Any]) -> None:
    """Check ``data`` against the JSON Schema of type ``name`` (``jsonschema`` raises if wrong).

    Needs the ``jsonschema`` package (a development dependency): the tests
    validate every event they make a service emit; a running service only
    checks that the type exists (:func:`shopkit.events.outbox.emit`).
    """
    import jsonschema  # noqa: PLC0415 (development dependency)

    jsonschema.Draft202012Validator(
        event_type(name).schema, format_checker=jsonschema.FormatChecker()
    ).validate(dict(data))


def dead_letter_stream(group: str) -> str:
    """The stream holding the events consumer group ``group`` gave up on."""
    return f"{STREAM_PREFIX}dead:{group}"


def replay_stream(group: str) -> str:
    """The stream through which dead letters are handed back to ``group`` only."""
    return f"{STREAM_PREFIX}replay:{group}"
