"""Alembic, one environment per service, each versioned inside its own schema.

A service's ``migrations/env.py`` is two lines: import its metadata and call
:func:`run_env`. The ``flask --app <service> db ...`` commands come from
:func:`db_cli`. Migrations of all services are serialised by an advisory
lock, so services started together (docker compose) can all upgrade at once.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import Connection, MetaData, create_engine, text
from sqlalchemy.pool import NullPool

from shopkit.db import advisory_key

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported only where migrations are run or inspected (the ``db``
# commands, ``upgrade``, ``env.py``), never by a serving worker: importing it
# costs ~10 MiB of memory in each gunicorn worker (bench/README.md), and serving
# needs only the revision checks below, which do without it.

log = logging.getLogger(__name__)

_MIGRATION_LOCK = advisory_key("shop", "migrations")


def _migrations_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None, f"no package {package}"
    return Path(spec.origin).parent / "migrations"


def alembic_config(package: str, url: str) -> Config:
    """The Alembic configuration of ``package`` (e.g. ``"customers_service"``) for ``url``."""
    from alembic.config import Config  # noqa: PLC0415 (see the note on imports above)

    importlib.import_module(package)
    config = Config()
    config.set_main_option("script_location", str(_migrations_dir(package)))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _declared(path: Path) -> tuple[object, object]:
    """``(revision, down_revision)`` as written in a migration script (``...`` if unreadable)."""
    found: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        target = value = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            try:
                found[target.id] = ast.literal_eval(value) if value is not None else ...
            except ValueError:
                found[target.id] = ...
    return found.get("revision", ...), found.get("down_revision", ...)


def head_revision(package: str) -> str | None:
    """The newest revision in ``package``'s migration scripts.

    A linear history (each script naming one ``down_revision`` as a literal) is
    read straight from the scripts; anything else (branches, merges, computed
    values) is left to Alembic's ``ScriptDirectory``, which also reports errors.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    simple = True
    for path in sorted((_migrations_dir(package) / "versions").glob("*.py")):
        revision, down = _declared(path)
        if not isinstance(revision, str) or not (down is None or isinstance(down, str)):
            simple = False
            break
        revisions.add(revision)
        if down is not None:
            parents.add(down)
    heads = revisions - parents
    if simple and len(heads) == 1 and parents <= revisions:
        return heads.pop()
    if simple and not revisions:
        return None
    from alembic.script import ScriptDirectory  # noqa: PLC0415 (see the note on imports)

    script = ScriptDirectory.from_config(alembic_config(package, "postgresql://unused"))
    return script.get_current_head()


def current_revision(connection: Connection, schema: str) -> str | None:
    """The revision the database schema ``schema`` is at (``None`` if never migrated)."""
    table = f'"{schema}".alembic_version'
    if connection.execute(text("SELECT to_regclass(:t)"), {"t": table}).scalar() is None:
        return None
    rows = connection.execute(text(f"SELECT version_num FROM {table}")).scalars().all()  # noqa: S608
    return rows[0] if len(rows) == 1 else None


def upgrade(package: str, url: str, revision: str = "head") -> None:
    """Apply ``package``'s migrations up to ``revision`` (a no-op when current)."""
    from alembic import command  # noqa: PLC0415 (see the note on imports above)

    command.upgrade(alembic_config(package, url), revision)


def run_env(metadata: MetaData) -> None:
    """Body of every service's ``env.py``: migrate ``metadata.schema`` online."""
    from alembic import context  # noqa: PLC0415 (see the note on imports above)

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
        from alembic import command  # noqa: PLC0415 (only when the command runs)

        command.upgrade(_config(), revision)
        bootstrap = current_app.extensions.get("shop_bootstrap")
        if bootstrap is not None:
            bootstrap()
        click.echo(f"{package}: database at {revision}")

    @group.command("downgrade")
    @click.argument("revision")
    def _downgrade(revision: str) -> None:
        """Revert migrations down to REVISION (e.g. -1 or base)."""
        from alembic import command  # noqa: PLC0415 (only when the command runs)

        command.downgrade(_config(), revision)

    @group.command("current")
    def _current() -> None:
        """Show the revision the database is at."""
        from alembic import command  # noqa: PLC0415 (only when the command runs)

        command.current(_config(), verbose=False)

    @group.command("revision")
    @click.option("-m", "--message", required=True)
    @click.option("--autogenerate", is_flag=True, help="Diff the models against the database.")
    def _revision(message: str, autogenerate: bool) -> None:
        """Create a new migration script."""
        from alembic import command  # noqa: PLC0415 (only when the command runs)

        command.revision(_config(), message=message, autogenerate=autogenerate)

    return group
