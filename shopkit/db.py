"""Database engine, one session per request, and helpers shared by every schema.

Each service owns one PostgreSQL schema; its models use :func:`make_metadata`
so that every table, index and constraint lives there with predictable names.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import Connection, Engine, MetaData, create_engine, event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from shopkit import db_guard
from shopkit.config import Settings
from shopkit.telemetry import engine_for_current_span, trace_sql

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


class MissingDatabaseURL(RuntimeError):
    """A service was started without ``DATABASE_URL`` and no development database exists."""


#: Entry-point group through which a development stack offers a database when
#: ``DATABASE_URL`` is unset (the dev stack's ``devstack.roles:database_url``). The runtime
#: never imports the dev stack: a service image, which does not install it, requires
#: ``DATABASE_URL`` instead.
DEV_DATABASE_GROUP = "shop.dev_database"


def resolve_database_url(settings: Settings) -> str:
    """``DATABASE_URL``, normalised; else the development database the dev stack offers.

    Without ``DATABASE_URL`` a service asks whatever is registered under
    :data:`DEV_DATABASE_GROUP` (installed with the project's dev stack, it starts or
    joins the embedded PostgreSQL under ``settings.data_dir``), so one service starts
    with no configuration at all on a development machine.
    :class:`MissingDatabaseURL` where neither exists.
    """
    if settings.database_url:
        return normalise_url(settings.database_url)
    for entry in entry_points(group=DEV_DATABASE_GROUP):
        try:
            offer = entry.load()
        except ImportError:  # the dev stack is listed but its extras are not installed
            continue
        return normalise_url(str(offer(Path(settings.data_dir) / "pg", settings.service_name)))
    raise MissingDatabaseURL(
        f"DATABASE_URL is not set for {settings.service_name}, and no development stack "
        "is installed to provide one (`make run` starts everything on a development machine)"
    )


def normalise_url(url: str) -> str:
    """Accept ``postgres://`` and ``postgresql://`` URLs and pick the psycopg2 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


#: A pooled connection unused for longer than this is checked before it is handed out.
IDLE_PING_AFTER_S = 10.0


def ping_when_idle(engine: Engine, idle_s: float) -> None:
    """Check a pooled connection at checkout, but only if it sat idle for ``idle_s``.

    ``pool_pre_ping`` would cost a round trip on every checkout, one per
    request. A connection in steady use has just proved itself, so only the
    ones idle long enough to have been dropped (a database restart, a
    firewall's idle timeout) are pinged; a dead one is replaced transparently.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < idle_s:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error:
            alive = False
        if not alive:
            raise DisconnectionError("the pooled connection was dropped while idle")


#: Client-side bounds on every connection (seconds unless named otherwise).
CONNECT_TIMEOUT_S = 2  # libpq's smallest useful value
POOL_TIMEOUT_S = 2.0
LOCK_TIMEOUT_MS = 3_000
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000
TCP_USER_TIMEOUT_MS = 10_000
#: A :class:`Database`'s statement bound unless it is given one.
DEFAULT_STATEMENT_TIMEOUT_MS = 5_000


def connect_args(application_name: str, statement_timeout_ms: int) -> dict[str, Any]:
    """libpq parameters that bound every wait on the server, and the guarded connection class.

    The server cancels a statement after ``statement_timeout`` and a lock wait
    after ``lock_timeout``; TCP keepalives and ``tcp_user_timeout`` notice a
    peer that vanished (ignored on a unix socket); the round-trip guard
    (:mod:`shopkit.db_guard`) cuts a call the server never answers, a little
    after the statement timeout.
    """
    options = (
        f"-c statement_timeout={statement_timeout_ms} -c lock_timeout={LOCK_TIMEOUT_MS} "
        f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}"
    )
    return {
        "application_name": application_name,
        "connect_timeout": CONNECT_TIMEOUT_S,
        "options": options,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 3,
        "keepalives_count": 3,
        "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
        "connection_factory": db_guard.connection_factory(
            statement_timeout_ms / 1000 + 1.0, CONNECT_TIMEOUT_S
        ),
    }


class Database:
    """An engine and its session factory for one service.

    With tracing on (:func:`shopkit.telemetry.init_tracing`, called first), its SQL is
    traced beneath recording spans, whatever uses it: requests, consumers, relays.
    """

    def __init__(
        self,
        url: str,
        *,
        application_name: str = "shop",
        pool_size: int = 5,
        statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    ) -> None:
        self.url = url
        self.engine: Engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_recycle=1800,
            poolclass=db_guard.DeadlinePool,  # no wait for a connection past the deadline
            pool_timeout=POOL_TIMEOUT_S,
            # Error messages (which reach the logs) must not carry bound values:
            # password hashes, token digests, personal data.
            hide_parameters=True,
            connect_args=connect_args(application_name, statement_timeout_ms),
        )
        ping_when_idle(self.engine, IDLE_PING_AFTER_S)
        trace_sql(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def sessions(self) -> Session:
        """A new session (the caller closes it), on the engine's traced copy under a recording span.

        See :func:`shopkit.telemetry.engine_for_current_span`: the engine is chosen
        once, when the session is made, so its SQL is traced as a whole or not at all.
        """
        return self._sessions(bind=engine_for_current_span(self.engine))

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


def local_statement_timeout(connection: Connection | Session, timeout_ms: int | None) -> None:
    """Bound every statement of the current transaction to ``timeout_ms`` (``SET LOCAL``).

    ``None`` keeps the connection's own bound and costs nothing: every connection a
    :class:`Database` makes already has a ``statement_timeout`` (:func:`connect_args`), so
    a loop that runs a transaction many times a second (a relay, a consumer) spends a
    round trip on this only when it wants a bound of its own.
    """
    if timeout_ms is None:
        return
    # SET LOCAL takes no bind parameters; the value is an integer of ours.
    connection.execute(text(f"SET LOCAL statement_timeout = {int(timeout_ms)}"))


def advisory_xact_lock(session: Session, *parts: str) -> None:
    """Wait for and take a transaction-scoped advisory lock."""
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key(*parts)})


def constraint_name(error: IntegrityError) -> str | None:
    """The name of the constraint that PostgreSQL reported violated in ``error``, if any."""
    diagnostics = getattr(error.orig, "diag", None)
    return getattr(diagnostics, "constraint_name", None)


#: PostgreSQL's ``query_canceled`` (``statement_timeout``) and ``lock_not_available``
#: (``lock_timeout``).
_TOO_SLOW_SQLSTATES = frozenset({"57014", "55P03"})


def statement_too_slow(error: DBAPIError) -> bool:
    """Whether the server cancelled the statement at its statement or lock timeout.

    The server answered, so it is up: this statement was too slow, or waited too long
    for a lock. A connection that failed or a server that did not answer in time
    (:mod:`shopkit.db_guard`) raises ``OperationalError`` too, but is not this.
    """
    return getattr(error.orig, "pgcode", None) in _TOO_SLOW_SQLSTATES


#: ``Session.info`` flag: a :func:`transaction` is open on the session.
_IN_TRANSACTION = "shop_in_transaction"
_ROLLBACK_ONLY = "shop_rollback_only"


def rollback_only(session: Session) -> bool:
    """Whether a nested block of ``session``'s open unit of work failed, so that it may not
    commit (see :func:`transaction`); a savepoint's taker notes it (:func:`undone_to_savepoint`)."""
    return bool(session.info.get(_ROLLBACK_ONLY))


def undone_to_savepoint(session: Session, rollback_only_then: bool) -> None:
    """Note that ``session`` rolled back to a savepoint taken before a nested block that
    failed: the writes since are gone, so the unit of work is rollback-only again only
    if it was when the savepoint was taken (``rollback_only_then``, :func:`rollback_only`)."""
    if rollback_only_then:
        session.info[_ROLLBACK_ONLY] = True
    else:
        session.info.pop(_ROLLBACK_ONLY, None)


class RollbackOnly(RuntimeError):
    """A unit of work whose nested block failed was about to commit (see :func:`transaction`)."""


@contextmanager
def transaction(session: Session) -> Iterator[Session]:
    """One unit of work on ``session``: committed when the block ends, rolled back if it
    raises (docs/architecture.rst, "Transactions").

    Business operations end their writes with it; routes never commit. Inside an
    open one (an operation run by :func:`shopkit.idempotency.run_idempotent`, which
    stores its answer in the same transaction as its effect), a nested block joins
    it: the outermost block alone commits or rolls back. A nested block that raises
    marks the whole unit rollback-only, so a caller that catches its error cannot
    commit its half-done writes: the outermost block then rolls back and raises
    :class:`RollbackOnly` (a savepoint per nested block would cost two round trips
    on every idempotent call). Commit and rollback are round trips bounded like any
    statement (the request's deadline, :mod:`shopkit.db_guard`).
    """
    if session.info.get(_IN_TRANSACTION):
        try:
            yield session
        except BaseException:
            session.info[_ROLLBACK_ONLY] = True
            raise
        return
    session.info[_IN_TRANSACTION] = True
    try:
        yield session
        if session.info.get(_ROLLBACK_ONLY):
            raise RollbackOnly("a nested unit of work failed; its writes are not committed")
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.info.pop(_IN_TRANSACTION, None)
        session.info.pop(_ROLLBACK_ONLY, None)
