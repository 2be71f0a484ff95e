"""The customers service (:5000): identity provider, accounts and wallets.

It issues the RS256 tokens every service verifies, publishes its public keys
as a JWKS, and keeps each wallet's balance together with a ledger of every
change. Sales debit wallets through ``/internal/wallet-debits``, exactly once
per idempotency key and sale.
"""

from __future__ import annotations

import logging
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy.exc import SQLAlchemyError

from customers_service.accounts import ensure_admin
from customers_service.events import backfill_customers
from customers_service.keys import KeyStore, ensure_signing_key
from customers_service.metrics import METRICS
from customers_service.models import OUTBOX, SCHEMA
from customers_service.passwords import Passwords
from customers_service.routes import auth_blp, customers_blp, internal_blp
from customers_service.throttle_gate import ThrottleGate
from shopkit.app import create_service_app
from shopkit.config import Settings
from shopkit.db import get_database
from shopkit.events import asyncapi
from shopkit.events.admin_routes import init_events_admin
from shopkit.events.service_relay import relay_with_first_request

log = logging.getLogger(__name__)


def bootstrap(app: Flask) -> None:
    """Create the first signing key and the bootstrap admin (both idempotent)."""
    database = app.extensions["shop_db"]
    settings: Settings = app.config["SHOP_SETTINGS"]
    with database.session() as session:
        ensure_signing_key(session)
        ensure_admin(session, app.extensions["customers_passwords"], settings)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the customers service app (see :func:`shopkit.app.create_service_app`)."""
    config = dict(config or {})
    settings: Settings = config.get("SETTINGS") or Settings.from_env("customers")
    config["SETTINGS"] = settings
    keys_holder: dict[str, KeyStore] = {}

    class _LazyKeys:
        """Resolves keys through the app's key store once the app exists."""

        def public_key(self, kid: str) -> Any:
            return keys_holder["keys"].public_key(kid)

    app = create_service_app(
        service="customers",
        import_name=__name__,
        package=__name__,
        schema=SCHEMA,
        title="Shop customers service",
        description="Accounts, authentication (RS256 JWT, JWKS) and wallets with a ledger.",
        blueprints=[auth_blp, customers_blp, internal_blp],
        metrics=METRICS,
        config=config,
        key_resolver=_LazyKeys(),
        bootstrap=bootstrap,
    )
    with app.app_context():
        keys_holder["keys"] = KeyStore(get_database())
    app.extensions["customers_keys"] = keys_holder["keys"]
    app.extensions["customers_passwords"] = Passwords(settings)
    asyncapi.serve(app, asyncapi.build_document("customers", "1.0.0", emits=["wallet", "customer"]))
    init_events_admin(app, outbox=OUTBOX, emits=("wallet", "customer"))
    relay_with_first_request(app, OUTBOX, "customers", emits=["wallet", "customer"])
    app.cli.add_command(events_cli)
    app.wsgi_app = ThrottleGate(app.wsgi_app, settings)  # type: ignore[method-assign]
    try:
        bootstrap(app)
    except SQLAlchemyError:
        log.warning(
            "customers schema not migrated yet: run 'flask --app customers_service db upgrade'"
        )
    return app


events_cli = AppGroup("events", help="The customers service's events.")


@events_cli.command("backfill-customers")
@click.option(
    "--all",
    "every",
    is_flag=True,
    help="Announce every customer again (not only those with no customer event yet).",
)
def backfill_command(every: bool) -> None:
    """Write a registered event (and deactivated, if so) for existing customers into the outbox.

    Idempotent without ``--all``: customers that already have a customer event are skipped.
    """
    with current_app.extensions["shop_db"].session() as session:
        count = backfill_customers(session, every=every)
    click.echo(f"customers: announced {count} customer(s) in the outbox")
