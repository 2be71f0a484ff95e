"""The sales service (:5002): orders as orchestrated sagas, exactly once.

``POST /sales`` (or ``POST /cart/checkout``) records the order as pending,
reserves every line's stock in inventory at once, debits the wallet in
customers and completes it; a refused debit releases the stock. A completed
order is shipped and delivered, or cancelled: a second saga refunds its
total and returns its stock. Every step carries an idempotency key derived
from the sale id, so a retry, a timeout or a crash never charges, refunds or
moves stock twice; a recovery pass (periodic, and ``flask --app sales_service
recover``) settles orders left pending or cancelling.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import click
from flask import Flask, current_app

from sales_service import observe
from sales_service.batching import Batcher
from sales_service.clients import build_clients
from sales_service.metrics import METRICS
from sales_service.models import OUTBOX, SCHEMA
from sales_service.recovery import PeriodicRecovery, recover_pending
from sales_service.routes import cart_blp, catalog_blp, sales_blp
from shopkit.app import create_service_app
from shopkit.config import Settings
from shopkit.events import asyncapi
from shopkit.events.admin_routes import init_events_admin
from shopkit.events.service_relay import relay_with_first_request
from shopkit.metrics import before_scrape

log = logging.getLogger(__name__)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the sales service app (see :func:`shopkit.app.create_service_app`).

    Config ``SALES_CLIENTS`` replaces the inventory/customers clients (tests);
    ``SALES_RECOVERY`` (default true) starts the periodic recovery thread;
    ``SALES_RELAY`` (default true) starts the outbox relay thread when the
    broker's URL (``EVENTS_URL``) is set and the app is not ``TESTING``.
    """
    config = dict(config or {})
    settings: Settings = config.get("SETTINGS") or Settings.from_env("sales")
    config["SETTINGS"] = settings
    clients = config.pop("SALES_CLIENTS", None) or build_clients(settings)
    periodic = config.pop("SALES_RECOVERY", True)
    relayed = config.pop("SALES_RELAY", True)
    app = create_service_app(
        service="sales",
        import_name=__name__,
        package=__name__,
        schema=SCHEMA,
        title="Shop sales service",
        description="Purchases run as a saga over inventory and customers, exactly once.",
        blueprints=[sales_blp, cart_blp, catalog_blp],
        metrics=METRICS,
        config=config,
    )
    app.extensions["sales_clients"] = clients
    app.extensions["sales_batcher"] = Batcher(
        clients,
        app.extensions["shop_db"],
        window_s=settings.sales_batch_window_ms / 1000,
        max_size=settings.sales_batch_max,
        max_flights=settings.sales_batch_flights,
    )
    before_scrape(app, lambda: observe.refresh_unsettled(app.extensions["shop_db"]))
    app.cli.add_command(recover_command)
    asyncapi.serve(app, asyncapi.build_document("sales", "1.0.0", emits=["order"]))
    init_events_admin(app, outbox=OUTBOX, emits=("order",))
    if relayed:
        relay_with_first_request(app, OUTBOX, "sales", emits=["order"])
    if periodic and settings.recovery_interval_s > 0:
        recovery = PeriodicRecovery(
            app.extensions["shop_db"],
            clients,
            interval_s=settings.recovery_interval_s,
            older_than_s=settings.recovery_after_s,
        )
        app.extensions["sales_recovery"] = recovery
        started = threading.Lock()

        @app.before_request
        def _start_recovery() -> None:
            # Started by the first request (a readiness probe, typically), so
            # CLI commands such as ``db upgrade`` never start it.
            if not recovery.started and started.acquire(blocking=False):
                recovery.start()

    return app


@click.command("recover")
@click.option(
    "--older-than",
    type=float,
    default=None,
    help="Seconds a sale must have been pending (default: SALES_RECOVERY_AFTER).",
)
def recover_command(older_than: float | None) -> None:
    """Drive every stale pending order to completed or failed, and cancelling to cancelled."""
    settings: Settings = current_app.config["SHOP_SETTINGS"]
    report = recover_pending(
        current_app.extensions["shop_db"],
        current_app.extensions["sales_clients"],
        older_than_s=settings.recovery_after_s if older_than is None else older_than,
    )
    click.echo(
        f"examined {report.examined}: {report.completed} completed, {report.failed} failed, "
        f"{report.cancelled} cancelled, {report.cancellation_refused} cancellations refused, "
        f"{report.still_pending} still unsettled, "
        f"{report.skipped} skipped"
    )
    for error in report.errors:
        click.echo(f"  {error}", err=True)
    if report.still_pending:
        raise SystemExit(1)
