"""The test database: a real PostgreSQL, one fresh database per test session.

It also hands the tests the dev stack's pieces (launcher, embedded PostgreSQL, gateway).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData

# The dev stack's pieces the tests use are imported here and only here: tests import them
# from this module, so moving the dev stack is a change of these lines alone.
from devstack import broker, mailsink, postgres, roles
from devstack.gateway import (
    CLOSED_ADDRESS,
    GATEWAY_DIR,
    SHARED_FILES,
    STOREFRONT_PATH,
    Gateway,
    nginx_binary,
    site_config,
    upstream_names,
)
from devstack.postgres import psql_command, scratch_database, throwaway_server
from devstack.processes import ServiceProcess, WorkerProcess, scratch_env
from devstack.roles import create_service_roles, service_role_url
from shopkit.migrations import upgrade
from shopkit.registry import APPS, FRONTENDS, SERVICE_NAMES, SERVICES, app, packages
from tests.support.clean_tables import KEEP_TABLES, empty_service_tables
from tests.support.ports import free_port

#: Service name -> package, of every service in the registry.
PACKAGES = packages()
#: The storefront's port.
STOREFRONT_PORT = app("storefront").port

__all__ = [
    "APPS",
    "CLOSED_ADDRESS",
    "FRONTENDS",
    "GATEWAY_DIR",
    "KEEP_TABLES",
    "PACKAGES",
    "SCHEMAS",
    "SERVICES",
    "SERVICE_NAMES",
    "SHARED_FILES",
    "STOREFRONT_PATH",
    "STOREFRONT_PORT",
    "Gateway",
    "ServiceProcess",
    "WorkerProcess",
    "app",
    "broker",
    "empty_service_tables",
    "free_port",
    "fresh_database",
    "mailsink",
    "migrate_as_service_roles",
    "nginx_binary",
    "packages",
    "postgres",
    "present_packages",
    "psql_command",
    "roles",
    "scratch_database",
    "scratch_env",
    "server_url",
    "service_role_url",
    "site_config",
    "throwaway_server",
    "upstream_names",
]


def present_packages() -> dict[str, str]:
    """Service name → package, for the services that exist in this checkout.

    ``SHOP_TEST_SERVICES=customers,sales`` limits it (e.g. while a service is half-built).
    """
    found = {}
    only = {s for s in os.environ.get("SHOP_TEST_SERVICES", "").split(",") if s}
    for service in SERVICES:
        name, package = service.name, service.package
        if only and name not in only:
            continue
        spec = importlib.util.find_spec(package)
        # A regular package (not a half-written namespace dir) with its migrations.
        if spec is not None and spec.origin and (Path(spec.origin).parent / "migrations").is_dir():
            found[name] = package
    return found


@contextmanager
def server_url(env_url: str | None) -> Iterator[str]:
    """An admin URL of a PostgreSQL server: ``TEST_DATABASE_URL`` or an embedded one."""
    with throwaway_server("shop-test-pg-", database_url=env_url, durable=False) as (_, url):
        yield url


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """Create a uniquely named database on the server, migrate every service, drop it after.

    As in Compose and ``make run``, each service's schema belongs to its own role, and
    each service is migrated (and, in the tests, connects) as that role.
    """
    with scratch_database(admin_url, "shop_test") as url:
        migrate_as_service_roles(url)
        yield url


def migrate_as_service_roles(url: str) -> None:
    """Create the service roles in ``url``'s database and migrate each service as its role."""
    create_service_roles(url)
    for service, package in present_packages().items():
        upgrade(package, service_role_url(url, service))


#: Every service's schema (each is named after its service).
SCHEMAS = list(present_packages())


def schema_drift(engine: Engine, schema: str, metadata: MetaData) -> list[Any]:
    """What Alembic's autogenerate finds between ``schema`` as migrated and the models'
    ``metadata`` (empty when the migrations match the models)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_schemas": True,
                "include_name": lambda name, type_, _p: type_ != "schema" or name == schema,
                "compare_type": True,
                "version_table_schema": schema,
            },
        )
        return list(compare_metadata(context, metadata))
