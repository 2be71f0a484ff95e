"""Event-carried state keeps each thing's newest event of a batch, by sequence."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shopkit.events.envelope import Event
from shopkit.events.ordering import UnorderedEvent, newest_by


def _event(order: str, sequence: int | None, kind: str = "shipped") -> Event:
    return Event(
        id=f"{order}-{sequence}",
        source="/sales",
        type=f"shop.order.{kind}.v1",
        subject=order,
        time=datetime.now(UTC),
        data={"order_id": order},
        sequence=sequence,
    )


def test_each_keys_newest_event_wins_whatever_the_order_they_came_in() -> None:
    events = [_event("a", 2), _event("b", 1), _event("a", 3, "delivered"), _event("a", 1)]
    newest = newest_by(events, lambda event: event.data["order_id"])
    assert {key: (e.sequence, e.type) for key, e in newest.items()} == {
        "a": (3, "shop.order.delivered.v1"),
        "b": (1, "shop.order.shipped.v1"),
    }


def test_an_event_without_a_sequence_cannot_be_ordered() -> None:
    with pytest.raises(UnorderedEvent, match="a-None has no sequence"):
        newest_by([_event("a", 1), _event("a", None)], lambda event: event.subject)
    assert issubclass(UnorderedEvent, ValueError)  # a handler's failure: retried, then dead
