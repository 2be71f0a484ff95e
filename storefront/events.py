"""The console's Events page: every service's ``/admin/events``, gathered into one view.

Each service that emits or consumes events answers ``GET /admin/events``
(:mod:`shopkit.events.admin_routes`): its outbox backlog, the streams it
touches and, for each consumer group it runs, the group's lag, pending entries,
inbox and dead letters. The page shows each stream once (several services
describe the same one), each group's lag on each of its streams, each outbox,
and the dead letters of every group that has some, to replay or discard. A
service that is down, or whose broker does not answer, is shown as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shopkit.service_client import DependencyUnavailable
from storefront.clients import SERVICES, ApiProblem, ShopApi

#: Dead letters shown per group (the oldest first); the CLI lists them all.
SHOWN_DEAD_LETTERS = 50


@dataclass
class GroupView:
    """One consumer group of one service."""

    service: str
    group: str
    inbox: int
    dead_letter_count: int | None
    lag: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None


@dataclass
class EventsPage:
    """Everything on the Events page."""

    #: Service name → its outbox (``total``, ``unpublished``, ``failing``, oldest age).
    outboxes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Stream name → ``{length, groups: [{group, pending, lag_entries, lag_seconds}]}``.
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: list[GroupView] = field(default_factory=list)
    #: Services that could not be read, or whose broker did not answer: why.
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def dead_letter_total(self) -> int:
        """Dead letters across every group (as far as known)."""
        return sum(g.dead_letter_count or 0 for g in self.groups)


def collect(api: ShopApi, token: str) -> EventsPage:
    """Read every service's events once and gather them (services down are noted)."""
    page = EventsPage()
    for service in SERVICES:
        try:
            found = api.events(token, service)
        except ApiProblem as exc:
            page.problems[service] = exc.message()
            continue
        except DependencyUnavailable as exc:
            page.problems[service] = exc.detail
            continue
        if found is None:
            continue  # it neither emits nor consumes events
        _add(page, service, found)
        for group in page.groups:
            if group.service == service and group.dead_letter_count:
                _read_dead_letters(api, token, group)
    return page


def _add(page: EventsPage, service: str, found: dict[str, Any]) -> None:
    if found.get("outbox") is not None:
        page.outboxes[service] = found["outbox"]
    broker = found.get("broker") or {}
    if not broker.get("available", False):
        page.problems[service] = str(broker.get("detail") or "the broker did not answer")
    for stream in found.get("streams") or []:
        page.streams[stream["stream"]] = stream
    for group in found.get("groups") or []:
        page.groups.append(
            GroupView(
                service=service,
                group=str(group["group"]),
                inbox=int(group.get("inbox") or 0),
                dead_letter_count=group.get("dead_letters"),
                lag=list(group.get("lag") or []),
            )
        )


def _read_dead_letters(api: ShopApi, token: str, group: GroupView) -> None:
    try:
        found = api.dead_letters(token, group.service, group.group, SHOWN_DEAD_LETTERS)
    except ApiProblem as exc:
        group.problem = exc.message()
    except DependencyUnavailable as exc:
        group.problem = exc.detail
    else:
        group.dead_letters = list(found.get("items") or [])
