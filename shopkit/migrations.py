"""Alembic, one environment per service, each versioned inside its own schema.

A service's ``migrations/env.py`` is two lines: import its metadata and call
:func:`run_env`. The ``flask --app <service> db ...`` commands come from
:func:`db_cli`. Migrations of all services are serialised by an advisory
lock, so services started together (docker compose) can all upgrade at once.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import click
from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import Connection, MetaData, create_engine, text
from sqlalchemy.pool import NullPool

from shopkit.db import advisory_key

log = logging.getLogger(__name__)

_MIGRATION_LOCK = advisory_key("shop", "migrations")


def alembic_config(package: str, url: str) -> Config:
    """The Alembic configuration of ``package`` (e.g. ``"customers_service"``) for ``url``."""
    module = importlib.import_module(package)
    assert module.__file__ is not None
    config = Config()
    config.set_main_option("script_location", str(Path(module.__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision(package: str) -> str | None:
    """The newest revision in ``package``'s migration scripts."""
    script = ScriptDirectory.from_config(alembic_config(package, "postgresql://unused"))
    return script.get_current_head()


def current_revision(connection: Connection, schema: str) -> str | None:
    """The revision the database schema ``schema`` is at (``None`` if never migrated)."""
    migration = MigrationContext.configure(connection, opts={"version_table_schema": schema})
    return migration.get_current_revision()


def upgrade(package: str, url: str, revision: str = "head") -> None:
    """Apply ``package``'s migrations up to ``revision`` (a no-op when current)."""
    command.upgrade(alembic_config(package, url), revision)


def run_env(metadata: MetaData) -> None:
    """Body of every service's ``env.py``: migrate ``metadata.schema`` online."""
    schema = metadata.schema
    assert schema, "service metadata must name its schema"
    config = context.config
    if context.is_offline_mode():
        raise click.UsageError("offline (--sql) migrations are not supported")
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=NullPool)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
        try:
            exists = connection.execute(
                text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}
            ).first()
            if exists is None:  # with per-service roles the schema is made for us up front
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            connection.commit()
            context.configure(
                connection=connection,
                target_metadata=metadata,
                version_table_schema=schema,
                include_schemas=True,
                include_name=lambda name, type_, _parent: type_ != "schema" or name == schema,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.rollback()  # a failed migration must not hide its error behind this one
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
            connection.commit()
    engine.dispose()


def db_cli(package: str) -> AppGroup:
    """The ``db`` command group (upgrade, downgrade, current, revision) for ``package``."""
    group = AppGroup("db", help="Database migrations of this service's schema.")

    def _config() -> Config:
        return alembic_config(package, current_app.extensions["shop_db"].url)

    @group.command("upgrade")
    @click.argument("revision", default="head")
    def _upgrade(revision: str) -> None:
        """Apply migrations up to REVISION (default: head); a no-op when current."""
        command.upgrade(_config(), revision)
        bootstrap = current_app.extensions.get("shop_bootstrap")
        if bootstrap is not None:
            bootstrap()
        click.echo(f"{package}: database at {revision}")

    @group.command("downgrade")
    @click.argument("revision")
    def _downgrade(revision: str) -> None:
        """Revert migrations down to REVISION (e.g. -1 or base)."""
        command.downgrade(_config(), revision)

    @group.command("current")
    def _current() -> None:
        """Show the revision the database is at."""
        command.current(_config(), verbose=False)

    @group.command("revision")
    @click.option("-m", "--message", required=True)
    @click.option("--autogenerate", is_flag=True, help="Diff the models against the database.")
    def _revision(message: str, autogenerate: bool) -> None:
        """Create a new migration script."""
        command.revision(_config(), message=message, autogenerate=autogenerate)

    return group
