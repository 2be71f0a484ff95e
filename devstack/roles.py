"""The database roles: one login role per service, owning only its own schema.

Like Compose (whose postgres container runs ``devstack/sql/init-roles.sh``),
the embedded database gives each service its own login role (``customers_svc``
...) owning only its own schema (``devstack/sql/create_roles.sql``), so
``make run``, the tests and Compose share one security model: no service can
read another's tables, such as the token signing keys in
``customers.signing_keys``. (The embedded server trusts connections on its
private unix socket, so the role passwords are not checked there; the roles'
privileges are.)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

from devstack import postgres
from shopkit.registry import SERVICES

ROLES_SQL = Path(__file__).parent / "sql" / "create_roles.sql"
#: The services that own a schema, each owned by the role ``<service>_svc``.
SERVICE_SCHEMAS = tuple(s.schema for s in SERVICES if s.has_database)


def role_name(service: str) -> str:
    """The database role of ``service`` (``customers_svc`` ...)."""
    return f"{service}_svc"


def create_service_roles(admin_url: str, passwords: dict[str, str] | None = None) -> None:
    """Run ``create_roles.sql`` on ``admin_url``'s database (idempotent, safe in parallel).

    ``passwords`` default to Compose's development defaults (each role's service name).
    """
    url = make_url(admin_url)
    args, env = postgres.psql_command(url)
    chosen = {service: service for service in SERVICE_SCHEMAS} | (passwords or {})
    variables = [f"-v{service}_password={password}" for service, password in chosen.items()]
    done = subprocess.run(  # noqa: S603
        [*args, "-q", "-v", "ON_ERROR_STOP=1", f"-vDBNAME={url.database}", *variables],
        input=ROLES_SQL.read_text(),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"creating the service roles failed: {done.stderr.strip()}")


def service_role_url(admin_url: str, service: str) -> str:
    """``admin_url`` as the service's own role (with Compose's development password)."""
    url = make_url(admin_url).set(username=role_name(service), password=service)
    return url.render_as_string(hide_password=False)


def ensure_service_roles(server: object, url: str) -> None:
    """Create the service roles and schemas in the embedded server's database unless they exist."""
    roles = ", ".join(f"'{role_name(s)}'" for s in SERVICE_SCHEMAS)
    found = server.psql(f"SELECT rolname FROM pg_roles WHERE rolname IN ({roles});")  # type: ignore[attr-defined]  # noqa: S608
    if f"({len(SERVICE_SCHEMAS)} rows)" not in found:
        create_service_roles(url)


def database_url(data_dir: Path, service: str | None = None) -> str:
    """The URL of the embedded database in ``data_dir`` (starting it if needed).

    For a service it connects as that service's own role (created, with every
    service's schema, on first use).
    """
    server, url = postgres.start(data_dir)
    if service not in SERVICE_SCHEMAS:
        return url
    ensure_service_roles(server, url)
    return service_role_url(url, service)
