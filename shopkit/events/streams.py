"""What the streams look like right now: length, and each group's lag and pending entries.

The console's Events page and the ``shop_consumer_lag_*`` / ``shop_dead_letters``
gauges both read it from the broker (``XINFO GROUPS``, ``XPENDING``, ``XRANGE``).
Lag in entries is the broker's own count of entries not yet delivered to the
group; lag in seconds is the age of the oldest entry the group has not finished
with, delivered or not (stream ids start with their millisecond timestamp).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from shopkit.events.catalog import dead_letter_stream
from shopkit.events.metrics import CONSUMER_LAG_ENTRIES, CONSUMER_LAG_SECONDS, DEAD_LETTERS

#: Past this many entries behind, the count is reported as this many (XRANGE is O(n)).
MAX_COUNTED_LAG = 10_000


@dataclass(frozen=True)
class GroupLag:
    """One consumer group on one stream."""

    group: str
    stream: str
    consumers: int
    pending: int
    lag_entries: int
    lag_seconds: float


@dataclass(frozen=True)
class StreamInfo:
    """One stream: its length and its consumer groups."""

    stream: str
    length: int
    groups: list[GroupLag]

    def lag_of(self, group: str) -> GroupLag | None:
        """``group``'s lag on this stream, or ``None`` if it has no such group (yet)."""
        return next((lag for lag in self.groups if lag.group == group), None)


def as_text(value: bytes | str | None) -> str:
    """A reply value as text (the client returns bytes; ``None`` becomes ``""``)."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def oldest_entry_age_s(broker: redis.Redis, stream: str) -> float:
    """The age of ``stream``'s first entry (0 when it has none): the lag in seconds of a
    group not created yet, which will start there."""
    first: Any = broker.xrange(stream, "-", "+", count=1)
    return max(0.0, time.time() - _ms(as_text(first[0][0])) / 1000) if first else 0.0


def _group_lag(broker: redis.Redis, stream: str, info: dict[str, Any]) -> GroupLag:
    group = as_text(info["name"])
    last = as_text(info["last-delivered-id"])
    candidates: list[int] = []
    if int(info["pending"]):
        summary = broker.xpending(stream, group)
        candidates.append(_ms(as_text(summary["min"])))
    undelivered = broker.xrange(stream, f"({last}", "+", count=1)
    if undelivered:
        candidates.append(_ms(as_text(undelivered[0][0])))
    lag = info.get("lag")
    if lag is None:  # the broker cannot tell after deletions; count (bounded)
        counted: Any = broker.xrange(stream, f"({last}", "+", count=MAX_COUNTED_LAG)
        lag = len(counted)
    age = max(0.0, time.time() - min(candidates) / 1000) if candidates else 0.0
    return GroupLag(group, stream, int(info["consumers"]), int(info["pending"]), int(lag), age)


def describe(broker: redis.Redis, stream: str, *, group: str | None = None) -> StreamInfo:
    """The length of ``stream`` and every group's lag on it (empty if it does not exist);
    only ``group``'s, if given (the others' XPENDING and XRANGE are not sent)."""
    if not broker.exists(stream):
        return StreamInfo(stream, 0, [])
    groups = [
        _group_lag(broker, stream, info)
        for info in broker.xinfo_groups(stream)
        if group is None or as_text(info["name"]) == group
    ]
    return StreamInfo(stream, int(broker.xlen(stream)), groups)


def observe_group(broker: redis.Redis, group: str, streams: Iterable[str]) -> list[GroupLag]:
    """``group``'s lag on each of ``streams``, also set as gauges with its dead-letter count."""
    lags = []
    for stream in streams:
        for lag in describe(broker, stream, group=group).groups:
            CONSUMER_LAG_ENTRIES.labels(group=group, stream=stream).set(lag.lag_entries)
            CONSUMER_LAG_SECONDS.labels(group=group, stream=stream).set(lag.lag_seconds)
            lags.append(lag)
    DEAD_LETTERS.labels(group=group).set(int(broker.xlen(dead_letter_stream(group))))
    return lags
