"""Dead letters: the events a consumer group gave up on, to list, replay or discard.

Each group has its own dead-letter stream (``events:dead:<group>``). An entry
there holds the original CloudEvent, where it came from (stream and entry id),
the last error and the number of deliveries. These functions are what the
CLI and the console's Events page call.

Replaying hands the event back to that group alone, through the group's
replay stream (``events:replay:<group>``) that its consumers also read; the
other groups, which applied the event long ago, never see it again. Because
the event keeps its id, the group's inbox still guarantees a single effect:
a replay of an event that was in fact applied (say, its consumer crashed
after committing, N times) changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from shopkit.events.catalog import dead_letter_stream, replay_stream
from shopkit.events.envelope import FIELD
from shopkit.events.streams import as_text


class DeadLetterNotFound(LookupError):
    """No dead letter with that id in that group."""


@dataclass(frozen=True)
class DeadLetter:
    """One event a group gave up on."""

    id: str
    group: str
    stream: str
    entry_id: str
    event_id: str | None
    type: str | None
    error: str
    attempts: int
    failed_at: float
    event: bytes


def _parse(group: str, entry_id: bytes | str, fields: dict[bytes, bytes]) -> DeadLetter:
    raw = fields.get(FIELD.encode(), b"")
    event_id = event_type = None
    try:
        envelope = json.loads(raw)
        event_id, event_type = envelope.get("id"), envelope.get("type")
    except (ValueError, AttributeError):
        pass  # a malformed event is dead-lettered as it came
    return DeadLetter(
        id=as_text(entry_id),
        group=group,
        stream=as_text(fields.get(b"stream", b"")),
        entry_id=as_text(fields.get(b"entry_id", b"")),
        event_id=event_id,
        type=event_type,
        error=as_text(fields.get(b"error", b"")),
        attempts=int(fields.get(b"attempts", b"0")),
        failed_at=float(fields.get(b"failed_at", b"0")),
        event=raw,
    )


def list_dead_letters(
    broker: redis.Redis, group: str, *, after: str = "-", count: int = 100
) -> list[DeadLetter]:
    """Up to ``count`` of ``group``'s dead letters, oldest first, after id ``after``."""
    start = after if after == "-" else f"({after}"
    entries: Any = broker.xrange(dead_letter_stream(group), start, "+", count=count)
    return [_parse(group, entry_id, fields) for entry_id, fields in entries]


def count_dead_letters(broker: redis.Redis, group: str) -> int:
    """How many dead letters ``group`` has."""
    return int(broker.xlen(dead_letter_stream(group)))


def _take(broker: redis.Redis, group: str, dead_id: str) -> DeadLetter:
    found: Any = broker.xrange(dead_letter_stream(group), dead_id, dead_id, count=1)
    if not found:
        raise DeadLetterNotFound(f"group {group!r} has no dead letter {dead_id!r}")
    return _parse(group, found[0][0], found[0][1])


def replay(broker: redis.Redis, group: str, dead_id: str) -> str:
    """Hand dead letter ``dead_id`` back to ``group``'s consumers; the replay entry's id.

    Moving it is atomic (``MULTI``): it is either still a dead letter or queued for replay.
    """
    letter = _take(broker, group, dead_id)
    pipe = broker.pipeline(transaction=True)
    pipe.xadd(
        replay_stream(group),
        {FIELD: letter.event, "stream": letter.stream, "entry_id": letter.entry_id},
    )
    pipe.xdel(dead_letter_stream(group), dead_id)
    replay_id, _deleted = pipe.execute()
    return as_text(replay_id)


def discard(broker: redis.Redis, group: str, dead_id: str) -> DeadLetter:
    """Delete dead letter ``dead_id`` for good; what it was."""
    letter = _take(broker, group, dead_id)
    broker.xdel(dead_letter_stream(group), dead_id)
    return letter
