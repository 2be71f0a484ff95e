"""Event-carried state: the newest of a batch's events for each thing they tell about.

A consumer that keeps state from another service's events (reviews' purchases
from order events, inventory's ratings from review events, notifications'
contacts from customer events) keeps, for each thing, what its newest event
told: the one with the highest ``sequence``, its position among its
aggregate's events (:mod:`shopkit.events.outbox`). Events arrive in sequence
order except around failures (a redelivery, a dead letter replayed), so a
batch is first reduced to the newest event per thing here, and the store then
takes it only if its stored sequence is lower (each service's own upsert).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

from shopkit.events.envelope import Event

Key = TypeVar("Key", bound=Hashable)


class UnorderedEvent(ValueError):
    """An event without a ``sequence``: it cannot be ordered against the others.

    Every event from an outbox has one; a consumer's handler that meets one
    fails, so the event is retried, then dead-lettered, on its own.
    """


def sequence_of(event: Event) -> int:
    """``event``'s sequence (raises :class:`UnorderedEvent` when it has none)."""
    if event.sequence is None:
        raise UnorderedEvent(f"{event.type} event {event.id} has no sequence")
    return event.sequence


def newest_by(events: Iterable[Event], key: Callable[[Event], Key]) -> dict[Key, Event]:
    """For each ``key(event)``, the event of ``events`` with the highest sequence.

    Raises :class:`UnorderedEvent` for an event without a sequence.
    """
    newest: dict[Key, tuple[int, Event]] = {}
    for event in events:
        sequence = sequence_of(event)
        found = key(event)
        known = newest.get(found)
        if known is None or known[0] < sequence:
            newest[found] = (sequence, event)
    return {found: event for found, (_, event) in newest.items()}
