"""The embedded PostgreSQL, for machines with no database server.

When neither ``DATABASE_URL`` (runs) nor ``TEST_DATABASE_URL`` (tests) is set,
the project runs a real PostgreSQL 16 shipped inside the ``pgserver`` wheel.
It listens only on a unix socket in its data directory, so it never clashes
with another server's port.

Each service connects to it as its own role (:mod:`devstack.roles`).
"""

from __future__ import annotations

import logging
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from shopkit.db import normalise_url

log = logging.getLogger(__name__)

DATABASE_NAME = "shop"
MAX_CONNECTIONS = 300

CleanupMode = Literal["stop", "delete"] | None


def psql_command(url: URL) -> tuple[list[str], dict[str, str]]:
    """The ``psql`` command line (pgserver's own binary) and environment reaching ``url``."""
    from pgserver._commands import POSTGRES_BIN_PATH  # noqa: PLC0415

    host = url.query.get("host") or url.host or "localhost"
    args = [str(POSTGRES_BIN_PATH / "psql"), "-h", str(host), "-U", url.username or "postgres"]
    args += ["-d", url.database or ""]
    if url.port:
        args += ["-p", str(url.port)]
    return args, {"PGPASSWORD": url.password or ""}


def _server(data_dir: Path, cleanup_mode: CleanupMode):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pgserver  # noqa: PLC0415 (heavy import, only when the embedded server is used)

        data_dir.parent.mkdir(parents=True, exist_ok=True)
        return pgserver.get_server(data_dir, cleanup_mode=cleanup_mode)


def _tune(server, *, durable: bool) -> None:  # type: ignore[no-untyped-def]
    """Raise the connection limit (needs a restart) and, for tests, drop durability."""
    current = int(server.psql("SHOW max_connections;").split("\n")[2].strip())
    if durable and current >= MAX_CONNECTIONS:
        return  # already tuned (every worker of `make run` joins the same server)
    settings = [f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS};"]
    if not durable:
        settings += [
            "ALTER SYSTEM SET fsync = off;",
            "ALTER SYSTEM SET synchronous_commit = off;",
            "ALTER SYSTEM SET full_page_writes = off;",
        ]
    server.psql("\n".join(settings))
    if current < MAX_CONNECTIONS:
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # noqa: PLC0415
        from pgserver.utils import PostmasterInfo  # noqa: PLC0415

        # pg_ctl restart reuses the options the server was started with (socket dir).
        pg_ctl(
            ["-w", "-l", str(server.log), "restart"],
            pgdata=server.pgdata,
            user=server.system_user,
            timeout=30,
        )
        # pgserver remembers the postmaster it started; point it at the new one so
        # that stopping the server later stops this one.
        server._postmaster_info = PostmasterInfo.read_from_pgdata(server.pgdata)
    else:
        server.psql("SELECT pg_reload_conf();")


def _sqlalchemy_url(server, database: str) -> str:  # type: ignore[no-untyped-def]
    uri: str = server.get_uri(database)
    return uri.replace("postgresql://", "postgresql+psycopg2://", 1)


def start(
    data_dir: Path, *, cleanup_mode: CleanupMode = None, durable: bool = True
) -> tuple[object, str]:
    """Start (or join) the embedded server in ``data_dir``; return it and the ``shop`` DB URL.

    ``cleanup_mode=None`` leaves the server running after this process exits,
    so ``flask db upgrade`` followed by ``gunicorn`` share one server; the
    launcher passes ``"stop"`` so Ctrl-C stops it.
    """
    server = _server(data_dir, cleanup_mode)
    _tune(server, durable=durable)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")  # noqa: S608
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    url = _sqlalchemy_url(server, DATABASE_NAME)
    log.info("embedded PostgreSQL ready in %s", data_dir)
    return server, url


@contextmanager
def throwaway_server(
    prefix: str, *, database_url: str | None = None, durable: bool = True
) -> Iterator[tuple[object | None, str]]:
    """An admin URL for tests and benchmarks: ``database_url``'s server, or a temporary one.

    Yields ``(server, admin_url)``; ``server`` is ``None`` for ``database_url``.
    A temporary embedded server is stopped and deleted afterwards.
    """
    if database_url:
        yield None, normalise_url(database_url)
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        server, url = start(Path(tmp) / "pg", cleanup_mode="stop", durable=durable)
        try:
            yield server, url
        finally:
            server.cleanup()  # type: ignore[attr-defined]


@contextmanager
def scratch_database(admin_url: str, prefix: str) -> Iterator[str]:
    """Create a uniquely named database on ``admin_url``'s server; drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
