"""The embedded PostgreSQL, for machines with no database server.

When neither ``DATABASE_URL`` (runs) nor ``TEST_DATABASE_URL`` (tests) is set,
the project runs a real PostgreSQL 16 shipped inside the ``pgserver`` wheel.
It listens only on a unix socket in its data directory, so it never clashes
with another server's port.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

DATABASE_NAME = "shop"
MAX_CONNECTIONS = 300

CleanupMode = Literal["stop", "delete"] | None


def _server(data_dir: Path, cleanup_mode: CleanupMode):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pgserver  # noqa: PLC0415 (heavy import, only when the embedded server is used)

        data_dir.parent.mkdir(parents=True, exist_ok=True)
        return pgserver.get_server(data_dir, cleanup_mode=cleanup_mode)


def _tune(server, *, durable: bool) -> None:  # type: ignore[no-untyped-def]
    """Raise the connection limit (needs a restart) and, for tests, drop durability."""
    settings = [f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS};"]
    if not durable:
        settings += [
            "ALTER SYSTEM SET fsync = off;",
            "ALTER SYSTEM SET synchronous_commit = off;",
            "ALTER SYSTEM SET full_page_writes = off;",
        ]
    current = int(server.psql("SHOW max_connections;").split("\n")[2].strip())
    server.psql("\n".join(settings))
    if current < MAX_CONNECTIONS:
        from pgserver._commands import pg_ctl  # noqa: PLC0415
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


def database_url(data_dir: Path) -> str:
    """Return the URL of the embedded database in ``data_dir``, starting it if needed."""
    return start(data_dir)[1]
