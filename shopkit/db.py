"""Database engine, one session per request, and helpers shared by every schema.

Each service owns one PostgreSQL schema; its models use :func:`make_metadata`
so that every table, index and constraint lives there with predictable names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask, current_app, g
from sqlalchemy import Engine, MetaData, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from shopkit import embedded_pg
from shopkit.config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def make_metadata(schema: str) -> MetaData:
    """Return a ``MetaData`` whose tables live in ``schema`` with conventional names."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def resolve_database_url(settings: Settings) -> str:
    """``DATABASE_URL`` if set, else the embedded PostgreSQL under ``settings.data_dir``."""
    if settings.database_url:
        return normalise_url(settings.database_url)
    return embedded_pg.database_url(Path(settings.data_dir) / "pg")


normalise_url = embedded_pg.normalise_url


class Database:
    """An engine and its session factory for one service."""

    def __init__(
        self,
        url: str,
        *,
        application_name: str = "shop",
        pool_size: int = 5,
        statement_timeout_ms: int = 10_000,
    ) -> None:
        self.url = url
        self.engine: Engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            pool_recycle=1800,
            connect_args={
                "application_name": application_name,
                "connect_timeout": 5,
                "options": f"-c statement_timeout={statement_timeout_ms}",
            },
        )
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for work outside a request (CLI, background jobs); closed after use."""
        session = self.sessions()
        try:
            yield session
        finally:
            session.close()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def init_db(app: Flask, database: Database) -> None:
    """Attach ``database`` to ``app`` and close the request's session at teardown."""
    app.extensions["shop_db"] = database

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session: Session | None = g.pop("db_session", None)
        if session is not None:
            session.close()  # rolls back anything not committed


def get_database() -> Database:
    """The :class:`Database` of the current app."""
    return current_app.extensions["shop_db"]  # type: ignore[no-any-return]


def get_session() -> Session:
    """The session of the current request (created on first use)."""
    if "db_session" not in g:
        g.db_session = get_database().sessions()
    return g.db_session  # type: ignore[no-any-return]


def advisory_key(*parts: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_*lock`` made from ``parts``."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def try_advisory_xact_lock(session: Session, *parts: str) -> bool:
    """Take a transaction-scoped advisory lock if free; ``False`` if someone holds it."""
    key = advisory_key(*parts)
    return bool(session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}).scalar())


def advisory_xact_lock(session: Session, *parts: str) -> None:
    """Wait for and take a transaction-scoped advisory lock."""
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key(*parts)})
