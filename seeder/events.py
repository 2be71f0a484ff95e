"""``python -m seeder events``: each service's events, and the dead letters to replay or discard.

Everything goes through each service's ``/admin/events`` (admin only, see
:mod:`shopkit.events.admin_routes`)::

    python -m seeder events status
    python -m seeder events dead-letters list
    python -m seeder events dead-letters --service notifications replay 1712345678901-0
    python -m seeder events dead-letters discard 1712345678901-0

A dead letter's id is its entry id in its group's dead-letter stream. Without
``--service`` and ``--group``, ``replay`` and ``discard`` look for the id in every
group of every service, and act only when it is in exactly one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from seeder import EXIT_FAILURE
from seeder.client import ApiError, Login, SeederError, Services, ServiceUnreachable
from seeder.command import connect, connection_options, reports_errors
from shopkit.registry import SERVICE_NAMES

PATH = "/admin/events"


@dataclass(frozen=True)
class Place:
    """One consumer group of one service."""

    service: str
    group: str


def overview(services: Services, admin: Login, service: str) -> dict[str, Any] | None:
    """``GET /admin/events`` of ``service``; ``None`` when it has none (it neither emits nor
    consumes events)."""
    reply = admin.call(services.api(service), "GET", PATH)
    if reply.status == 404:
        return None
    if reply.status != 200:
        raise ApiError(service, "GET", PATH, reply.status, reply.body)
    return reply.body  # type: ignore[no-any-return]


def groups(services: Services, admin: Login, names: tuple[str, ...]) -> Iterator[Place]:
    """Every consumer group the ``names`` services run."""
    for service in names:
        found = overview(services, admin, service)
        if found is None or not (found.get("broker") or {}).get("configured", True):
            continue  # no events here, or events off: no dead letters to read
        for group in found.get("groups") or []:
            yield Place(service, str(group["group"]))


def dead_letters(services: Services, admin: Login, place: Place) -> list[dict[str, Any]]:
    """Every dead letter of ``place``, oldest first (page after page)."""
    api = services.api(place.service)
    return admin.keyset(api, f"{PATH}/dead-letters", {"group": place.group}, limit=200)


def act(services: Services, admin: Login, place: Place, dead_id: str, action: str) -> Any:
    """Replay or discard dead letter ``dead_id`` of ``place``; the service's answer."""
    path = f"{PATH}/dead-letters/{dead_id}/{action}"
    reply = admin.call(services.api(place.service), "POST", path, params={"group": place.group})
    if reply.status != 200:
        raise ApiError(place.service, "POST", path, reply.status, reply.body)
    return reply.body


def _services(service: str | None) -> tuple[str, ...]:
    return (service,) if service else SERVICE_NAMES


def _places(
    services: Services, admin: Login, console: Console, service: str | None, group: str | None
) -> list[Place]:
    """The groups asked for; services that do not answer are named and skipped."""
    if service and group:
        return [Place(service, group)]
    found = []
    for name in _services(service):
        try:
            found += [p for p in groups(services, admin, (name,)) if not group or p.group == group]
        except ServiceUnreachable as exc:
            if service:
                raise
            console.print(f"[yellow]skipped:[/] {exc}")
    return found


@click.group()
def events() -> None:
    """Each service's outbox and consumer groups, and their dead letters."""


@events.command()
@click.option("--service", type=click.Choice(SERVICE_NAMES), help="One service only.")
@connection_options
@reports_errors
def status(service: str | None, **kwargs: Any) -> None:
    """Each service's outbox backlog and each group's lag, pending and dead letters."""
    services, admin, console = connect(kwargs, ("customers",))
    table = Table(title="events", title_justify="left")
    for column in ("service", "outbox unpublished", "group", "stream", "lag", "pending",
                   "dead letters"):  # fmt: skip
        table.add_column(column)
    for name in _services(service):
        try:
            found = overview(services, admin, name)
        except ServiceUnreachable as exc:
            table.add_row(name, f"unreachable: {exc.reason}")
            continue
        if found is None:
            continue
        outbox = found.get("outbox")
        backlog = "—" if outbox is None else f"{outbox['unpublished']:,} of {outbox['total']:,}"
        table.add_row(name, backlog)
        if not found["broker"]["available"]:
            table.add_row("", "", "", f"broker: {found['broker']['detail']}")
        for group in found["groups"]:
            for lag in group["lag"] or []:
                table.add_row("", "", group["group"], lag["stream"],
                              f"{lag['lag_entries']:,} ({lag['lag_seconds']:.1f} s)",
                              f"{lag['pending']:,}", str(group["dead_letters"]))  # fmt: skip
    console.print(table)


@events.group(name="dead-letters")
@click.option("--service", type=click.Choice(SERVICE_NAMES), help="Only this service's groups.")
@click.option("--group", help="Only this consumer group.")
@click.pass_context
def dead_letters_group(ctx: click.Context, service: str | None, group: str | None) -> None:
    """The events consumer groups gave up on: list, replay (after a fix) or discard them."""
    ctx.obj = {"service": service, "group": group}


def _scope(ctx: click.Context) -> tuple[str | None, str | None]:
    return ctx.obj["service"], ctx.obj["group"]


@dead_letters_group.command(name="list")
@connection_options
@reports_errors
@click.pass_context
def list_command(ctx: click.Context, **kwargs: Any) -> None:
    """Every dead letter, oldest first per group, with its error."""
    service, group = _scope(ctx)
    services, admin, console = connect(kwargs, ("customers",))
    table = Table(title="dead letters", title_justify="left")
    for column in ("service", "group", "id", "type", "event id", "attempts"):
        table.add_column(column, no_wrap=True)
    table.add_column("error", overflow="fold")
    count = 0
    for place in _places(services, admin, console, service, group):
        for letter in dead_letters(services, admin, place):
            count += 1
            table.add_row(place.service, place.group, letter["id"], letter.get("type") or "?",
                          letter.get("event_id") or "?", str(letter["attempts"]),
                          letter["error"])  # fmt: skip
    console.print(table)
    console.print(f"{count:,} dead letter{'s' if count != 1 else ''}.")


def _find(
    services: Services, admin: Login, console: Console, ctx: click.Context, dead_id: str
) -> Place:
    service, group = _scope(ctx)
    if service and group:
        return Place(service, group)
    holding = [
        place
        for place in _places(services, admin, console, service, group)
        if any(letter["id"] == dead_id for letter in dead_letters(services, admin, place))
    ]
    if not holding:
        raise SeederError(f"No dead letter {dead_id} in any consumer group.")
    if len(holding) > 1:
        where = ", ".join(f"{p.service}/{p.group}" for p in holding)
        raise SeederError(f"Dead letter {dead_id} is in {where}: give --service and --group.")
    return holding[0]


def _act_command(ctx: click.Context, dead_id: str, action: str, kwargs: dict[str, Any]) -> None:
    services, admin, console = connect(kwargs, ("customers",))
    place = _find(services, admin, console, ctx, dead_id)
    try:
        act(services, admin, place, dead_id, action)
    except ApiError as exc:
        if exc.status != 404:
            raise
        console.print(
            f"[bold red]error:[/] {place.service}/{place.group}: no dead letter {dead_id}."
        )
        sys.exit(EXIT_FAILURE)
    done = "replayed to its group" if action == "replay" else "discarded"
    console.print(f"Dead letter {dead_id} of {place.service}/{place.group} {done}.")


@dead_letters_group.command()
@click.argument("dead_id", metavar="ID")
@connection_options
@reports_errors
@click.pass_context
def replay(ctx: click.Context, dead_id: str, **kwargs: Any) -> None:
    """Hand dead letter ID back to its group (once its handler is fixed)."""
    _act_command(ctx, dead_id, "replay", kwargs)


@dead_letters_group.command()
@click.argument("dead_id", metavar="ID")
@connection_options
@reports_errors
@click.pass_context
def discard(ctx: click.Context, dead_id: str, **kwargs: Any) -> None:
    """Delete dead letter ID for good."""
    _act_command(ctx, dead_id, "discard", kwargs)
