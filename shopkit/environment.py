"""Every environment variable the project reads, declared once with its default and meaning.

:class:`shopkit.config.Settings` reads the variables that carry a ``setting``
from this list (and nothing else); the other entries are read by gunicorn's
configuration, ``make run``, the tracing set-up or the test suite. The docs'
configuration page is this list, and a test checks that the code reads no
variable missing here. The benchmarks' own ``BENCH_*`` knobs are documented in
``bench/README.md``.

A ``default`` given here is the text shown for the variable; for a setting
without one, the :class:`~shopkit.config.Settings` field's default is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopkit.registry import SERVICE_NAMES

#: Who reads a variable, in the order the docs list them.
SCOPES = {
    "service": "Service settings (shopkit.config.Settings)",
    "process": "Processes: gunicorn, make run, Compose, the storefront",
    "tracing": "Tracing (OpenTelemetry's own variables)",
    "tests": "The test suite",
}


def _text(_name: str, raw: str) -> str:
    return raw


def _lower(_name: str, raw: str) -> str:
    return raw.lower()


def _upper(_name: str, raw: str) -> str:
    return raw.upper()


def _url(_name: str, raw: str) -> str:
    return raw.rstrip("/")


def _path(_name: str, raw: str) -> Path:
    return Path(raw)


def _number(kind: type[int] | type[float]) -> Callable[[str, str], Any]:
    """A parser of ``kind`` whose error names the variable."""

    def parse(name: str, raw: str) -> Any:
        try:
            return kind(raw)
        except ValueError as exc:
            article = "an integer" if kind is int else "a number"
            raise ValueError(f"{name} must be {article}, got {raw!r}") from exc

    return parse


_int = _number(int)
_float = _number(float)


@dataclass(frozen=True)
class Variable:
    """One environment variable: its meaning, its default and who reads it."""

    name: str
    meaning: str
    #: The :class:`~shopkit.config.Settings` field it fills, if any.
    setting: str = ""
    parse: Callable[[str, str], Any] = _text
    #: The default as shown to users ("" = the setting's default, or unset).
    default: str = ""
    scope: str = "service"


def _service(name: str, setting: str, meaning: str, parse: Any = _text, default: str = "") -> Any:
    return Variable(name, meaning, setting, parse, default)


def _other(scope: str, name: str, default: str, meaning: str) -> Variable:
    return Variable(name, meaning, default=default, scope=scope)


ENVIRONMENT: tuple[Variable, ...] = (
    _service(
        "DATABASE_URL",
        "database_url",
        "The service's PostgreSQL database (``postgres://``, ``postgresql://`` or a SQLAlchemy "
        "URL). Required to serve; ``make run`` sets it to the embedded PostgreSQL under "
        "``SHOP_DATA_DIR`` (one role per service) unless it is set.",
    ),
    _service(
        "SHOP_DATA_DIR",
        "data_dir",
        "Where ``make run``'s embedded PostgreSQL keeps its data (in ``pg/``).",
        _path,
        ".data",
    ),
    _service(
        "CUSTOMERS_URL",
        "customers_url",
        "Base URL of the customers service (tokens, JWKS, wallets).",
        _url,
        "http://127.0.0.1:5000",
    ),
    _service(
        "INVENTORY_URL",
        "inventory_url",
        "Base URL of the inventory service (catalogue, reservations).",
        _url,
        "http://127.0.0.1:5001",
    ),
    _service(
        "SALES_URL",
        "sales_url",
        "Base URL of the sales service (purchases, for reviews).",
        _url,
        "http://127.0.0.1:5002",
    ),
    _service(
        "REVIEWS_URL",
        "reviews_url",
        "Base URL of the reviews service.",
        _url,
        "http://127.0.0.1:5003",
    ),
    _service(
        "NOTIFICATIONS_URL",
        "notifications_url",
        "Base URL of the notifications service (each customer's notifications).",
        _url,
        "http://127.0.0.1:5004",
    ),
    _service(
        "EVENTS_URL",
        "events_url",
        "The event broker: a Valkey (or Redis) server, ``redis://user:password@host:port/db`` "
        "(``rediss://`` for TLS): the services as its ``default`` user, the storefront as "
        "``storefront``, which may only read the order stream (see events.rst, Broker users). "
        "``make run`` starts an embedded one with its data in ``SHOP_DATA_DIR/valkey`` "
        "unless it is set. Unset, a service publishes nothing: its events wait in its outbox "
        "until a broker is configured.",
        _text,
        "",
    ),
    _service(
        "SMTP_URL",
        "smtp_url",
        "The mail server of the notifications service, ``smtp://[user:password@]host:port`` "
        "(``smtps://`` for TLS). ``make run`` starts a local sink keeping each mail under "
        "``SHOP_DATA_DIR/mail`` unless it is set; Compose runs Mailpit.",
        _text,
        "smtp://127.0.0.1:1025",
    ),
    _service("MAIL_FROM", "mail_from", "The sender of the notification mails."),
    _service(
        "WORKER_METRICS_PORT",
        "worker_metrics_port",
        "Where a service's background worker (``python -m notifications_service.worker``) "
        "serves its Prometheus ``/metrics``; ``0`` serves none.",
        _int,
        "5104",
    ),
    _service(
        "ADMIN_USERNAME",
        "admin_username",
        "The bootstrap admin, created once by customers.",
    ),
    _service(
        "ADMIN_PASSWORD",
        "admin_password",
        "The bootstrap admin's password (a development default, warned about, when unset).",
    ),
    _service(
        "SERVICE_CLIENT_SECRET",
        "service_client_secret",
        "Development fallback secret of the client-credentials grant for every service whose "
        "own ``<NAME>_CLIENT_SECRET`` is unset. Refused in production mode.",
    ),
    *(
        Variable(
            f"{client.upper()}_CLIENT_SECRET",
            f"The {client} service's own secret for ``POST /auth/service-token`` with client id "
            f"``{client}`` (customers needs every one: it checks them).",
            default="SERVICE_CLIENT_SECRET",
        )
        for client in SERVICE_NAMES
    ),
    _service(
        "STOREFRONT_SECRET_KEY",
        "storefront_secret_key",
        "The storefront's key signing its session cookie and CSRF tokens (a development "
        "default, warned about, when unset).",
    ),
    _service(
        "SHOP_ENV",
        "environment",
        "``production`` refuses to start with a development default, a shared or missing "
        "service secret or no ``DATABASE_URL``, and turns ``/admin/faults`` off.",
        _lower,
    ),
    _service("LOG_LEVEL", "log_level", "Level of the JSON log lines on stdout.", _upper),
    _service(
        "ACCESS_LOG",
        "access_log",
        "``quiet``: an access line only for 5xx answers and slow requests; ``all``: every request.",
        _lower,
    ),
    _service("ACCESS_TOKEN_TTL", "access_token_ttl_s", "Access token lifetime (s).", _int),
    _service("REFRESH_TOKEN_TTL", "refresh_token_ttl_s", "Refresh token lifetime (s).", _int),
    _service(
        "HTTP_CONNECT_TIMEOUT",
        "http_connect_timeout_s",
        "Connect timeout of calls between services (s).",
        _float,
    ),
    _service(
        "HTTP_READ_TIMEOUT",
        "http_read_timeout_s",
        "Read timeout of calls between services (s).",
        _float,
    ),
    _service(
        "HTTP_RETRIES", "http_retries", "Retries of an idempotent call between services.", _int
    ),
    _service(
        "JWKS_CACHE_TTL", "jwks_cache_ttl_s", "How long the public keys are cached (s).", _int
    ),
    _service(
        "DB_POOL_SIZE",
        "db_pool_size",
        "Connection pool size per process (as many may overflow).",
        _int,
    ),
    _service(
        "DB_STATEMENT_TIMEOUT_MS",
        "db_statement_timeout_ms",
        "PostgreSQL ``statement_timeout`` (ms); the client cuts a round trip a second later.",
        _int,
    ),
    _service(
        "REQUEST_DEADLINE",
        "request_deadline_s",
        "One request's whole budget (s), shared by its calls and statements.",
        _float,
    ),
    _service("PASSWORD_HASH_TIME_COST", "password_hash_time_cost", "Argon2id time cost.", _int),
    _service(
        "PASSWORD_HASH_MEMORY_KIB", "password_hash_memory_kib", "Argon2id memory cost (KiB).", _int
    ),
    _service(
        "PASSWORD_HASH_PARALLELISM", "password_hash_parallelism", "Argon2id parallelism.", _int
    ),
    _service(
        "SALES_RECOVERY_INTERVAL",
        "recovery_interval_s",
        "Seconds between two recovery passes of a sales worker (0: no periodic pass).",
        _float,
    ),
    _service(
        "SALES_RECOVERY_AFTER",
        "recovery_after_s",
        "Seconds an order must have been unsettled before recovery drives it.",
        _float,
    ),
    _service(
        "SALES_BATCH_WINDOW_MS",
        "sales_batch_window_ms",
        "Group commit: how long the leader of a batch of reservations or debits waits for the "
        "purchases of this process already on their way (never when none is; docs/saga.rst).",
        _float,
    ),
    _service(
        "SALES_BATCH_MAX",
        "sales_batch_max",
        "Group commit: the most calls in one batch. ``1`` switches batching off (every "
        "purchase calls inventory and customers alone).",
        _int,
    ),
    _service(
        "SALES_BATCH_FLIGHTS",
        "sales_batch_flights",
        "Group commit: batches of one saga step in the air at once per sales process.",
        _int,
    ),
    _service(
        "THROTTLE_ACCOUNT_FAILURES",
        "throttle_account_failures",
        "Wrong credentials for one account within ``THROTTLE_WINDOW`` before it is blocked (429).",
        _int,
    ),
    _service(
        "THROTTLE_ADDRESS_FAILURES",
        "throttle_address_failures",
        "Wrong credentials from one client address within ``THROTTLE_WINDOW`` before a block.",
        _int,
    ),
    _service(
        "THROTTLE_REGISTRATIONS",
        "throttle_registrations",
        "Registrations from one client address within ``THROTTLE_WINDOW``.",
        _int,
    ),
    _service(
        "THROTTLE_WINDOW", "throttle_window_s", "Seconds over which attempts are counted.", _int
    ),
    _service(
        "THROTTLE_BLOCK",
        "throttle_block_s",
        "Seconds of the first block; each further failure doubles it (at most the window).",
        _int,
    ),
    _service(
        "DEACTIVATION_REFRESH",
        "deactivation_refresh_s",
        "Seconds between two reads of the deactivated accounts by the other services.",
        _float,
    ),
    _service(
        "TRUSTED_PROXIES",
        "trusted_proxies",
        "Comma-separated addresses or networks whose ``X-Forwarded-For`` is believed (the "
        "gateway's). Empty: trust nobody.",
    ),
    _other("process", "WEB_CONCURRENCY", "2", "Gunicorn worker processes per service."),
    _other("process", "GUNICORN_THREADS", "4", "Threads per gunicorn worker (``gthread``)."),
    _other(
        "process", "GUNICORN_TIMEOUT", "30", "Seconds before gunicorn restarts a silent worker."
    ),
    _other(
        "process",
        "GUNICORN_GRACEFUL_TIMEOUT",
        "5",
        "Seconds a worker gets to finish its requests on shutdown.",
    ),
    _other(
        "process",
        "PROMETHEUS_MULTIPROC_DIR",
        "a new temporary directory",
        "Where gunicorn workers pool their metrics (set by :mod:`shopkit.gunicorn_conf`, "
        "which removes the directory it made when the master exits).",
    ),
    _other(
        "process",
        "SHOP_FAULTS_DIR",
        "a new temporary directory",
        "Where a gunicorn master's workers share the live faults (set by gunicorn's "
        "configuration unless given; the launcher gives the notifications app and its worker "
        "one, so the worker's consumer feels that service's faults). Not for users.",
    ),
    _other(
        "process",
        "MALLOC_MMAP_THRESHOLD_",
        "",
        "glibc's own variable; when set, gunicorn's configuration leaves the mmap threshold alone.",
    ),
    _other(
        "process",
        "SHOP_SETTINGS_CHECKED",
        "",
        "Set by the gunicorn master once it checked the settings, so workers do not repeat "
        "the warnings. Not for users.",
    ),
    _other(
        "process",
        "SALES_CRASH_AFTER",
        "",
        "Chaos testing only: a sales worker exits right after the named saga step "
        "(``record``, ``reserve``, ``debit``, ``release``, ``refund``, ``return``) got its "
        "answer (a crash point of :mod:`shopkit.faults`, armed at start-up).",
    ),
    _other(
        "process",
        "STOREFRONT_PORT",
        "8080",
        "``make run``: the storefront's port.",
    ),
    _other(
        "process",
        "STOREFRONT_SECURE_COOKIES",
        "",
        "``1``: the storefront's session cookie is sent over HTTPS only; ``0``: also over "
        "HTTP. Unset: ``1`` in production mode (``SHOP_ENV=production``), else ``0``.",
    ),
    _other(
        "process",
        "SHOP_CURRENCY",
        "USD",
        "The storefront: the shop's currency (ISO 4217), shown with every amount.",
    ),
    _other(
        "process",
        "SHOP_LOCALE",
        "en_US",
        "The storefront: how amounts are written (``de_DE``: ``1.234,50 €``).",
    ),
    _other(
        "process",
        "SHOP_DEMO",
        "1",
        "``make run``: ``0`` turns the demo seeding and replay off.",
    ),
    _other("process", "SHOP_SEED_CUSTOMERS", "200", "``make run``: demo customers."),
    _other("process", "SHOP_SEED_PRODUCTS", "100", "``make run``: demo products."),
    _other(
        "process",
        "SHOP_PROMETHEUS",
        "1",
        "``make run``: ``0`` does not start Prometheus even when it is installed.",
    ),
    _other(
        "process",
        "SHOP_GATEWAY_PORT",
        "8000",
        "``make run``: the nginx gateway's port (started only when nginx is installed).",
    ),
    _other(
        "process",
        "SHOP_BIND_ADDRESS",
        "127.0.0.1",
        "Compose: the host address the ports are published on (``0.0.0.0`` exposes them).",
    ),
    _other(
        "tracing",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "",
        "The OTLP/HTTP collector (e.g. ``http://jaeger:4318``). Setting it turns tracing on.",
    ),
    _other(
        "tracing",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "",
        "The full traces URL, instead of the endpoint + ``/v1/traces``.",
    ),
    _other("tracing", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "The only one installed."),
    _other(
        "tracing",
        "JAEGER_UI_URL",
        "",
        "The storefront: Jaeger's UI (e.g. ``http://127.0.0.1:16686``); while tracing is on, "
        "an order's page links to its traces there.",
    ),
    _other(
        "tracing",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "",
        "As ``OTEL_EXPORTER_OTLP_PROTOCOL``, for traces only.",
    ),
    _other(
        "tracing",
        "OTEL_TRACES_EXPORTER",
        "",
        "``otlp`` (when an endpoint is set), ``console`` or ``none`` (off).",
    ),
    _other(
        "tracing",
        "OTEL_TRACES_SAMPLER",
        "",
        "Which traces are kept; unset, one trace in ten (``parentbased_traceidratio``, 0.1). "
        "``parentbased_always_on`` keeps every one.",
    ),
    _other(
        "tracing",
        "OTEL_TRACES_SAMPLER_ARG",
        "",
        "The ratio for ``parentbased_traceidratio`` (0 to 1).",
    ),
    _other("tracing", "OTEL_SDK_DISABLED", "", "``true`` turns tracing off whatever else is set."),
    _other(
        "tracing",
        "OTEL_PYTHON_FLASK_EXCLUDED_URLS",
        "probes, /metrics, API docs",
        "Paths not traced.",
    ),
    _other(
        "tests",
        "TEST_DATABASE_URL",
        "",
        "A PostgreSQL server on which each run creates (and drops) a fresh database; unset: an "
        "embedded server in a temporary directory.",
    ),
    _other(
        "tests",
        "SHOP_TEST_SERVICES",
        "",
        "Comma-separated services to migrate and test (e.g. ``customers,sales``); unset: all.",
    ),
    _other(
        "tests",
        "SHOP_TEST_PORT_BASE",
        "16000",
        "The first of the ports a test session's processes pick from (1,000 per xdist worker, "
        "below the kernel's ephemeral range); ``make test`` gives its two sessions their own.",
    ),
    _other(
        "tests",
        "SHOP_TEST_GROUP",
        "crashy",
        "Set by the event crash tests for their worker process: its consumer group. Not for users.",
    ),
    _other(
        "tests",
        "SHOP_TEST_STREAMS",
        "",
        "Set by the event crash tests for their worker process: the streams it reads "
        "(comma-separated). Not for users.",
    ),
    _other(
        "tests",
        "SHOP_FUZZ_IDENTITIES",
        "",
        "Set by the contract test for its Schemathesis hooks: a JSON object of identity name "
        "to bearer token. Not for users.",
    ),
)

#: Variable name → declaration.
BY_NAME = {variable.name: variable for variable in ENVIRONMENT}
