"""The seeder's command line: ``populate``, ``replay``, ``audit`` and ``demo``.

Exit codes: 0 success; 1 audit violations, failed result checks or a command
the services refused; 2 usage error; 3 a service unreachable or not ready.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from seeder import EXIT_FAILURE, EXIT_OK
from seeder.audit import EXAMPLES, STATUSES, Auditor, AuditReport
from seeder.audit_events import DEFAULT_MARGIN_S
from seeder.client import Login, SeederError, Services, ServiceUnreachable
from seeder.command import EXIT_CODES_HELP, F, connect, connection_options, reports_errors
from seeder.data import CustomerFactory
from seeder.events import events
from seeder.faults import faults
from seeder.populate import PopulateResult, Populator
from seeder.replay import (
    CANCEL_SHARE,
    DELIVER_SHARE,
    REVIEW_SHARE,
    SHIP_SHARE,
    Replay,
    ReplayOptions,
    discover_customers,
    load_catalog,
)
from seeder.replay.progress import stats_table, watch

# --- the group --------------------------------------------------------------------------------


@click.group(
    help="Fill the Shop with realistic data, replay shoppers against it and audit it.\n\n"
    + EXIT_CODES_HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="shop", prog_name="seeder")
def cli() -> None:
    """The seeder's command group."""


def main() -> None:
    """Entry point of ``python -m seeder``."""
    cli(prog_name="python -m seeder")


# --- populate ---------------------------------------------------------------------------------


def _populate_table(result: PopulateResult) -> Table:
    table = Table(title=f"populate, seed {result.seed}", title_justify="left")
    table.add_column("")
    table.add_column("asked", justify="right")
    table.add_column("created", justify="right")
    table.add_column("already there", justify="right")
    table.add_row(
        "customers",
        f"{result.customers_requested:,}",
        f"{result.customers_created:,}",
        f"{result.customers_existing:,}",
    )
    table.add_row(
        "wallet top-ups",
        "",
        f"{result.wallets_topped_up:,} ({result.money_topped_up:,.2f})",
        "",
    )
    table.add_row(
        "products",
        f"{result.products_requested:,}",
        f"{result.products_created:,}",
        f"{result.products_existing:,}",
    )
    table.add_row("product pictures", "", f"{result.images_uploaded:,}", "")
    return table


def run_populate(
    services: Services,
    admin: Login,
    console: Console,
    *,
    customers: int,
    products: int,
    seed: int,
    batch_size: int = 1000,
    parallel: int = 2,
    images: bool = True,
) -> PopulateResult:
    """Populate with a progress display and a summary; returns what was done."""
    console.print(
        f"Populating seed {seed}: {customers:,} customers and {products:,} products "
        f"({services.config.customers_url}, {services.config.inventory_url})"
    )
    progress = Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=not console.is_terminal,
    )
    tasks = {
        "customers": progress.add_task("customers", total=customers),
        # Every customer's wallet is settled: topped up now, needing none, or already there.
        "wallets": progress.add_task("wallets", total=customers, visible=False),
        "products": progress.add_task("products", total=products),
    }

    def advance(kind: str, count: int) -> None:
        progress.update(tasks[kind], advance=count, visible=True)

    populator = Populator(services, admin, seed, batch_size=batch_size, parallel=parallel,
                          images=images, on_progress=advance)  # fmt: skip
    with progress:
        result = populator.run(customers, products)
    console.print(_populate_table(result))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    existing = result.customers_existing + result.products_existing
    if existing and not (result.customers_created or result.products_created):
        console.print(
            f"Seed {seed} was already populated: {result.customers_existing:,} customers and "
            f"{result.products_existing:,} products already exist; nothing was created."
        )
    elif existing:
        console.print(
            f"{result.customers_existing:,} customers and {result.products_existing:,} products "
            "already existed and were left as they are."
        )
    created = result.customers_created + result.products_created
    rate = f" ({created / result.elapsed_s:,.0f} records/s)" if created and result.elapsed_s else ""
    console.print(f"Done in {result.elapsed_s:.2f} s{rate}.")
    return result


@cli.command(epilog=EXIT_CODES_HELP)
@click.option(
    "--customers",
    "customer_count",
    type=click.IntRange(0, 1_000_000),
    default=200,
    show_default=True,
    help="How many customers (the seed's first N).",
)
@click.option(
    "--products",
    "product_count",
    type=click.IntRange(0, 1_000_000),
    default=100,
    show_default=True,
    help="How many products (the seed's first M).",
)
@click.option("--seed", type=int, default=42, show_default=True, help="Same seed, same data.")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=1000, show_default=True)
@click.option(
    "--parallel",
    type=click.IntRange(1, 8),
    default=2,
    show_default=True,
    help="Batch requests in flight at once.",
)
@click.option(
    "--images/--no-images",
    default=True,
    show_default=True,
    help="Give each new product its picture (an SVG drawn from its category and name).",
)
@connection_options
@reports_errors
def populate(
    customer_count: int,
    product_count: int,
    seed: int,
    batch_size: int,
    parallel: int,
    images: bool,
    **kwargs: Any,
) -> None:
    """Create the seed's customers (wallets topped up) and products through the bulk APIs.

    Running it again with the same seed creates nothing twice and says what exists.
    Customer passwords are derived from the seed (see seeder.data.derive_password).
    """
    services, admin, console = connect(kwargs, ("customers", "inventory"))
    run_populate(
        services,
        admin,
        console,
        customers=customer_count,
        products=product_count,
        seed=seed,
        batch_size=batch_size,
        parallel=parallel,
        images=images,
    )


# --- replay -----------------------------------------------------------------------------------


def share_option(flag: str, default: float, help_text: str) -> Callable[[F], F]:
    """A ``--<what>-share`` option: a share between 0 and 1."""
    return click.option(
        flag, type=click.FloatRange(0, 1), default=default, show_default=True, help=help_text
    )


def plural(count: int, noun: str) -> str:
    """``1 violation``, ``2 violations``: the count and the noun, agreed."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def prepare_replay(
    services: Services, admin: Login, console: Console, options: ReplayOptions
) -> Replay:
    """Find the seed's shoppers and the catalogue, check reviews, build the replay."""
    seed = options.seed
    count = options.customers
    if count is None:
        count = discover_customers(services, admin, seed)
        if count == 0:
            raise SeederError(
                f"No customers of seed {seed} at {services.config.customers_url}: "
                f"run 'python -m seeder populate --seed {seed}' first."
            )
    shoppers = [spec.username for spec in CustomerFactory(seed).first(count)]
    catalog = load_catalog(services)
    reviews_enabled = True
    try:
        services.reviews.ready()
    except ServiceUnreachable as exc:
        reviews_enabled = False
        console.print(f"[yellow]warning:[/] {exc} Reviews will be skipped.")
    return Replay(services, admin, options, shoppers, catalog, reviews_enabled=reviews_enabled)


def _check_notifications(replay: Replay, console: Console) -> None:
    """Wait (boundedly) for each completed order's notifications, saying so first."""
    if not replay.stop_event.is_set():
        bound = replay.options.notification_bound_s
        console.print(f"Checking each order's notifications (up to {bound:g} s)...")
    replay.check_notifications()


def run_replay(
    services: Services,
    admin: Login,
    console: Console,
    options: ReplayOptions,
    *,
    report_every_s: float = 10.0,
    outcomes_path: Path | None = None,
) -> Replay:
    """Load shoppers and catalogue, run the replay with a live display, print the summary."""
    replay = prepare_replay(services, admin, console, options)
    if options.purchases is not None:
        what = f"{options.purchases:,} purchases"
    elif options.duration_s:
        what = f"for {options.duration_s:g} s"
    else:
        what = "until stopped"
    pace = f"{options.rate:g}/s" if options.rate else "as fast as possible"
    console.print(
        f"Replaying seed {options.seed}: {len(replay.shoppers):,} shoppers, "
        f"{len(replay.catalog):,} products in stock, {what}, {pace}, "
        f"concurrency {options.concurrency}."
    )
    watch(replay, console, report_every_s)
    _check_notifications(replay, console)
    console.print(stats_table(replay, f"replay summary, seed {options.seed}"))
    if replay.stats.verification_failures:
        console.print("[bold red]Result checks failed:[/]")
        for line in replay.stats.verification_failures:
            console.print(f"  {line}")
    if replay.stats.cart_changes:
        console.print("[yellow]Carts changed by another actor (not failures):[/]")
        for line in replay.stats.cart_changes:
            console.print(f"  {line}")
    if replay.stats.errors:
        console.print("[yellow]Unexpected answers (counted as failures):[/]")
        for line in replay.stats.errors:
            console.print(f"  {line}")
    if outcomes_path is not None:
        with outcomes_path.open("w") as handle:
            for outcome in replay.outcomes:
                handle.write(json.dumps(outcome.record(), sort_keys=True) + "\n")
        console.print(f"Outcomes written to {outcomes_path}.")
    if replay.abort_reason is not None:
        raise replay.abort_reason
    return replay


@cli.command(epilog=EXIT_CODES_HELP)
@click.option("--purchases", type=click.IntRange(1), help="Stop after this many attempts.")
@click.option(
    "--duration",
    type=click.FloatRange(0),
    help="Stop after this many seconds (0: run until stopped).",
)
@click.option(
    "--rate",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Attempts (baskets checked out) per second (0: as fast as the concurrency allows).",
)
@click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True, help="The populate seed.")
@click.option(
    "--customers",
    "customer_count",
    type=click.IntRange(1),
    help="Shop as the seed's first N customers (default: all of them that exist).",
)
@share_option("--review-share", REVIEW_SHARE, "Share of completed orders the buyer reviews.")
@share_option(
    "--cancel-share",
    CANCEL_SHARE,
    "Share of completed orders their buyer cancels (refunded, stock returned).",
)
@share_option("--ship-share", SHIP_SHARE, "Share of the other completed orders the admin ships.")
@share_option("--deliver-share", DELIVER_SHARE, "Share of shipped orders the admin delivers.")
@click.option(
    "--notification-bound",
    "notification_bound_s",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="Seconds after the run within which each completed order's notifications must have "
    "arrived (checked when EVENTS_URL is set and the notifications service is up).",
)
@click.option(
    "--outcomes",
    "outcomes_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write every attempt's outcome as JSON lines, in attempt order.",
)
@click.option(
    "--report-every",
    type=click.FloatRange(0),
    default=10.0,
    show_default=True,
    help="Seconds between status lines when the output is not a terminal (0: never).",
)
@connection_options
@reports_errors
def replay(
    purchases: int | None,
    duration: float | None,
    rate: float,
    concurrency: int,
    seed: int,
    customer_count: int | None,
    review_share: float,
    cancel_share: float,
    ship_share: float,
    deliver_share: float,
    notification_bound_s: float,
    outcomes_path: Path | None,
    report_every: float,
    **kwargs: Any,
) -> None:
    """Simulated shoppers fill carts, check out, top up, cancel and review; an admin ships,
    delivers, restocks and moderates. Ctrl-C stops cleanly.

    Each attempt is one basket of 1-4 products checked out as one order. Every result is
    checked against the order itself and its own ledger entries, never against a balance
    someone else can move: a completed order's lines and total, the buyer's history, one
    debit of its total; a refused order took nothing; a cancellation gave the exact total
    back once. The admin moderates only the reviews this run's shoppers wrote. After the
    run, each completed order's notifications (completed, cancelled, shipped, delivered)
    must reach its buyer within --notification-bound seconds; without EVENTS_URL or the
    notifications service that check is skipped, with the reason.
    Give either --purchases or --duration. With --concurrency 1 the same seed on the
    same data gives the same sequence of orders and outcomes.
    """
    if (purchases is None) == (duration is None):
        raise click.UsageError("Give exactly one of --purchases N or --duration SECONDS.")
    services, admin, console = connect(
        kwargs, ("customers", "inventory", "sales"), pool_size=max(16, concurrency * 2)
    )
    options = ReplayOptions(
        seed=seed,
        purchases=purchases,
        duration_s=duration,
        rate=rate,
        concurrency=concurrency,
        customers=customer_count,
        review_share=review_share,
        cancel_share=cancel_share,
        ship_share=ship_share,
        deliver_share=deliver_share,
        keep_outcomes=purchases is not None or outcomes_path is not None,
        notification_bound_s=notification_bound_s,
    )
    result = run_replay(
        services,
        admin,
        console,
        options,
        report_every_s=report_every,
        outcomes_path=outcomes_path,
    )
    if result.stats.verification_failures:
        sys.exit(EXIT_FAILURE)


# --- audit ------------------------------------------------------------------------------------


def print_audit(report: AuditReport, console: Console) -> None:
    """The audit as tables: one row per check, then the violations of each failed check."""
    table = Table(title="audit", title_justify="left")
    table.add_column("check")
    table.add_column("checked", justify="right")
    table.add_column("result")
    for check in report.checks:
        result = (
            Text("ok", style="green")
            if check.ok
            else Text(plural(len(check.violations), "violation"), style="bold red")
        )
        table.add_row(check.name, f"{check.checked:,}", result)
    console.print(table)
    for check in report.checks:
        if check.ok:
            continue
        title = f"violations: {check.name}"
        detail = Table(
            title=title,
            title_justify="left",
            style="red",
            show_header=False,
            min_width=len(title),  # the title on one line, however short the examples
        )
        detail.add_column()
        for line in check.violations[:EXAMPLES]:
            detail.add_row(line)
        if len(check.violations) > EXAMPLES:
            detail.add_row(f"... and {len(check.violations) - EXAMPLES:,} more")
        console.print(detail)
    totals = Table(title="what the audit saw", title_justify="left", show_header=False)
    totals.add_column(style="bold")
    totals.add_column()
    sales = report.sales
    by_status = ", ".join(
        f"{sales.get(status, 0):,} {status}"
        for status in STATUSES
        if sales.get(status) or status in ("completed", "failed", "pending")
    )
    unknown = sum(count for status, count in sales.items() if status not in STATUSES)
    totals.add_row(
        "orders",
        f"{sum(sales.values()):,}: {by_status}" + (f", {unknown:,} unknown" if unknown else ""),
    )
    totals.add_row("in flight (not judged)", f"{report.in_flight:,}")
    totals.add_row("units sold", f"{report.units_sold:,} ({report.units_reserved:,} reserved)")
    totals.add_row("money in paid orders", f"{report.money_in_sales:,.2f}")
    totals.add_row("money debited (net of refunds)", f"{report.money_debited:,.2f}")
    totals.add_row("money refunded", f"{report.money_refunded:,.2f}")
    totals.add_row("sale ledger entries", f"{report.ledger_entries:,}")
    totals.add_row("reservations", f"{report.reservations:,}")
    totals.add_row("wallets", f"{report.wallets_checked:,} holding {report.total_balance:,.2f}")
    totals.add_row("products", f"{report.products_checked:,}")
    console.print(totals)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    if report.ok:
        console.print(f"[bold green]Audit passed[/] in {report.elapsed_s:.2f} s.")
    else:
        console.print(
            f"[bold red]Audit FAILED:[/] {plural(report.violations, 'violation')} "
            f"in {plural(sum(not c.ok for c in report.checks), 'check')}."
        )


@cli.command(epilog=EXIT_CODES_HELP)
@click.option(
    "--pending-after",
    type=click.FloatRange(0),
    default=60.0,
    show_default=True,
    help="An order pending (or cancelling) longer than this many seconds is a violation.",
)
@click.option(
    "--events-margin",
    type=click.FloatRange(0),
    default=DEFAULT_MARGIN_S,
    show_default=True,
    help="Events younger than this many seconds are in flight (not yet published or applied).",
)
@click.option(
    "--events/--no-events",
    default=True,
    show_default=True,
    help="Also check the events (outboxes, consumer groups, event-carried state).",
)
@connection_options
@reports_errors
def audit(pending_after: float, events_margin: float, events: bool, **kwargs: Any) -> None:
    """Check the invariants of every order across services; exit 1 on any violation.

    Paid orders (completed, shipped, delivered): one debit of the total and a reserved
    reservation of exactly their lines. Cancelled: a debit and a refund that cancel out,
    stock returned. Failed: nothing kept. Nothing pending or cancelling for too long.
    Events: every outbox row published, every published event applied once by each group
    reading it (one notification, one mail per order event), no dead letters; ratings and
    verified purchases equal their sources. Services with events off are noted and skipped.
    """
    services, admin, console = connect(kwargs, ("customers", "inventory", "sales"))
    report = Auditor(
        services, admin, pending_after, events=events, events_margin_s=events_margin
    ).run()
    print_audit(report, console)
    sys.exit(EXIT_OK if report.ok else EXIT_FAILURE)


# --- demo -------------------------------------------------------------------------------------


@cli.command(epilog=EXIT_CODES_HELP)
@click.option(
    "--customers", "customer_count", type=click.IntRange(0), default=200, show_default=True
)
@click.option("--products", "product_count", type=click.IntRange(0), default=100, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--rate", type=click.FloatRange(0), default=1.0, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 256), default=2, show_default=True)
@click.option(
    "--duration",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Seconds of replay (0: until stopped).",
)
@connection_options
@reports_errors
def demo(
    customer_count: int,
    product_count: int,
    seed: int,
    rate: float,
    concurrency: int,
    duration: float,
    **kwargs: Any,
) -> None:
    """Populate, then replay gently until stopped: what make run and docker compose run.

    Populating again with the same seed creates nothing, so restarts are cheap. The replay
    runs at ``--rate 1`` with ``--concurrency 2`` until Ctrl-C or SIGTERM (or ``--duration``).
    """
    services, admin, console = connect(
        kwargs, ("customers", "inventory", "sales"), pool_size=max(16, concurrency * 2)
    )
    run_populate(
        services,
        admin,
        console,
        customers=customer_count,
        products=product_count,
        seed=seed,
    )
    options = ReplayOptions(
        seed=seed,
        duration_s=duration,
        rate=rate,
        concurrency=concurrency,
        keep_outcomes=False,
    )
    result = run_replay(services, admin, console, options)
    sys.exit(EXIT_FAILURE if result.stats.verification_failures else EXIT_OK)


cli.add_command(faults)
cli.add_command(events)

__all__ = ["cli", "main"]
