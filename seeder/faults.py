"""``python -m seeder faults``: switch live faults on and off in the running services.

Each service keeps its own fault set (``GET``/``PUT``/``DELETE /admin/faults``,
admin only, refused in production mode; see :mod:`shopkit.fault_routes`). For example::

    python -m seeder faults set inventory --kind hang --route "POST /internal/reservations"
    python -m seeder faults set sales --kind latency --latency-ms 800 --dependency customers
    python -m seeder faults set sales --kind crash --after-step debit --rate 0.2
    python -m seeder faults set sales --kind hang --dependency broker --operation publish
    python -m seeder faults show
    python -m seeder faults clear
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.table import Table

from seeder import EXIT_FAILURE, EXIT_OK
from seeder.client import Login, Services
from seeder.command import connect, connection_options, reports_errors
from shopkit.fault_routes import SAGA_STEPS
from shopkit.faults import BROKER, BROKER_OPERATIONS, EVENT_CRASH_POINTS
from shopkit.registry import SERVICE_NAMES

SERVICES = SERVICE_NAMES
#: What a fault's ``--dependency`` may name: another service, or the event broker.
DEPENDENCIES = (*SERVICE_NAMES, BROKER)
PATH = "/admin/faults"


def _answer(service: str, reply: Any) -> dict[str, Any]:
    if reply.status not in (200, 204):
        detail = reply.body.get("detail") if isinstance(reply.body, dict) else reply.body
        raise click.ClickException(f"{service}: {reply.status} {detail}")
    return reply.body if isinstance(reply.body, dict) else {"faults": []}


def _describe(fault: dict[str, Any]) -> str:
    target = " ".join(
        f"{name}={fault[name]}"
        for name in ("route", "dependency", "operation", "after_step")
        if fault.get(name) is not None
    )
    extra = {
        k: v
        for k, v in fault.items()
        if k not in ("kind", "route", "dependency", "operation", "after_step")
    }
    return f"{fault['kind']} on {target or 'every request'} " + " ".join(
        f"{k}={v}" for k, v in extra.items()
    )


def _show(services: Services, admin: Login, names: tuple[str, ...]) -> Table:
    table = Table(title="live faults", title_justify="left")
    table.add_column("service", style="bold")
    table.add_column("faults")
    for name in names:
        body = _answer(name, admin.call(services.api(name), "GET", PATH))
        faults = body.get("faults") or []
        table.add_row(name, "\n".join(_describe(f) for f in faults) or "none")
    return table


@click.group()
def faults() -> None:
    """Switch live faults (latency, errors, hangs, crashes) on and off in the services."""


@faults.command()
@click.argument("names", metavar="[SERVICE]...", nargs=-1, type=click.Choice(SERVICES))
@connection_options
@reports_errors
def show(names: tuple[str, ...], **kwargs: Any) -> None:
    """Show the faults switched on (in every service by default)."""
    names = names or SERVICES
    services, admin, console = connect(kwargs, names)
    console.print(_show(services, admin, names))


@faults.command(name="set")
@click.argument("service", type=click.Choice(SERVICES))
@click.option("--kind", type=click.Choice(("latency", "error", "hang", "crash")), required=True)
@click.option("--route", help='Incoming requests starting with "METHOD /path" (or "/path").')
@click.option(
    "--dependency",
    type=click.Choice(DEPENDENCIES),
    help="Outgoing calls to a service, or the broker (its relay's publishing and consumers).",
)
@click.option(
    "--operation",
    type=click.Choice(BROKER_OPERATIONS),
    help="With --dependency broker: only publishing, or only consuming.",
)
@click.option(
    "--after-step",
    type=click.Choice((*SAGA_STEPS, *EVENT_CRASH_POINTS)),
    help="Crash right after this step: a saga step (sales), or an event crash point "
    "(publish: the relay; apply, commit: a consumer).",
)
@click.option("--latency-ms", type=click.IntRange(1, 60_000))
@click.option("--hang-s", type=click.FloatRange(0.1, 120))
@click.option("--status", type=click.IntRange(500, 599), help="Status of an injected error.")
@click.option("--rate", type=click.FloatRange(0, 1), help="Share of requests hit (default 1).")
@click.option("--add", is_flag=True, help="Add to the service's faults instead of replacing them.")
@connection_options
@reports_errors
def set_fault(service: str, add: bool, **kwargs: Any) -> None:
    """Switch a fault on in SERVICE (replacing its other faults unless --add)."""
    fault = {
        name: kwargs.pop(name)
        for name in (
            "kind",
            "route",
            "dependency",
            "operation",
            "after_step",
            "latency_ms",
            "hang_s",
            "status",
            "rate",
        )
    }
    fault = {name: value for name, value in fault.items() if value is not None}
    services, admin, console = connect(kwargs, (service,))
    api = services.api(service)
    current = _answer(service, admin.call(api, "GET", PATH)).get("faults", []) if add else []
    reply = admin.call(api, "PUT", PATH, json={"faults": [*current, fault]})
    if reply.status == 422:
        errors = reply.body.get("errors") if isinstance(reply.body, dict) else reply.body
        console.print(f"[bold red]refused:[/] {json.dumps(errors)}")
        sys.exit(EXIT_FAILURE)
    _answer(service, reply)
    console.print(_show(services, admin, (service,)))
    sys.exit(EXIT_OK)


@faults.command()
@click.argument("names", metavar="[SERVICE]...", nargs=-1, type=click.Choice(SERVICES))
@connection_options
@reports_errors
def clear(names: tuple[str, ...], **kwargs: Any) -> None:
    """Switch every fault off (in every service by default)."""
    names = names or SERVICES
    services, admin, console = connect(kwargs, names)
    for name in names:
        _answer(name, admin.call(services.api(name), "DELETE", PATH))
    console.print(f"Faults cleared in {', '.join(names)}.")
