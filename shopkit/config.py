"""Configuration from the environment (12-factor), with local defaults.

Every setting has a default that makes the local run work with nothing set
(without ``DATABASE_URL`` a service uses the embedded PostgreSQL the dev stack
offers, see :func:`shopkit.db.resolve_database_url`): the service URLs default
to ``127.0.0.1`` on the standard ports
(:mod:`shopkit.registry`), and the secrets to development values (a warning is
logged once per service when those are in use).

Each service has its own client secret, ``<NAME>_CLIENT_SECRET`` (e.g.
``SALES_CLIENT_SECRET``); ``SERVICE_CLIENT_SECRET`` is only the shared
development fallback. With ``SHOP_ENV=production`` a service refuses to start
(:class:`InsecureConfiguration`) while any development default, a shared
service secret or a missing secret is in use.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shopkit.deadline import DEFAULT_BUDGET_S
from shopkit.environment import ENVIRONMENT, Variable
from shopkit.registry import SERVICE_NAMES, SERVICES

log = logging.getLogger(__name__)

#: Repository root (the parent of this package), where ``.data/`` lives by default.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEV_SERVICE_CLIENT_SECRET = "dev-service-secret-change-me"  # noqa: S105 (documented dev default)
DEV_ADMIN_PASSWORD = "admin-password"  # noqa: S105 (documented dev default)
DEV_STOREFRONT_SECRET_KEY = "dev-storefront-secret-change-me"  # noqa: S105 (documented dev default)
#: The broker users' passwords in Compose and the dev overlay (docs/events.rst, Broker users).
DEV_BROKER_PASSWORDS = ("dev-broker-password-change-me", "dev-storefront-broker-password-change-me")
#: Every secret that ships in this repository (code, Compose, docs): never good enough for
#: production. The database role passwords are Compose's defaults.
DEV_SECRETS = frozenset(
    {
        DEV_SERVICE_CLIENT_SECRET,
        DEV_ADMIN_PASSWORD,
        "change-me-in-production",
        DEV_STOREFRONT_SECRET_KEY,
        *DEV_BROKER_PASSWORDS,
        "admin",
        "password",
        "postgres",
        *SERVICE_NAMES,  # the services' database role passwords in Compose
    }
)
#: The shortest client secret or admin password production mode accepts.
MIN_SECRET_LENGTH = 16
PRODUCTION = "production"
#: Set by the gunicorn master once it has checked the settings and logged the warnings,
#: so its workers do not repeat them.
CHECKED_MARKER = "SHOP_SETTINGS_CHECKED"

#: Each service's standard port (from :mod:`shopkit.registry`).
SERVICE_PORTS = {service.name: service.port for service in SERVICES}


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


class InsecureConfiguration(RuntimeError):
    """Production mode found a development default, a shared or a missing secret."""


def client_secret_variable(client_id: str) -> str:
    """The environment variable holding ``client_id``'s own secret, e.g. ``SALES_CLIENT_SECRET``."""
    return f"{client_id.upper()}_CLIENT_SECRET"


def _client_secrets() -> dict[str, str]:
    """The per-service secrets that are set (``<NAME>_CLIENT_SECRET``), by service name."""
    found = {}
    for name in SERVICE_PORTS:
        value = os.environ.get(client_secret_variable(name))
        if value:
            found[name] = value
    return found


_warned: set[str] = set()


def service_url(service: str) -> str:
    """``<SERVICE>_URL`` from the environment, else ``http://127.0.0.1:<its port>``."""
    return _env(f"{service.upper()}_URL", f"http://127.0.0.1:{SERVICE_PORTS[service]}").rstrip("/")


def _worker_metrics_port() -> int:
    """The metrics port of the (one) service with a background worker, in the registry."""
    return next((s.worker_metrics_port for s in SERVICES if s.worker_metrics_port), 0)


@dataclass(frozen=True)
class Settings:
    """All runtime settings of a service, read once from the environment.

    ``database_url`` is empty when ``DATABASE_URL`` is unset: a service then
    uses the dev stack's embedded PostgreSQL in ``data_dir``, or refuses to start
    where no dev stack is installed (:func:`shopkit.db.resolve_database_url`).
    """

    service_name: str
    database_url: str = ""
    data_dir: Path = PROJECT_ROOT / ".data"
    customers_url: str = field(default_factory=lambda: service_url("customers"))
    inventory_url: str = field(default_factory=lambda: service_url("inventory"))
    sales_url: str = field(default_factory=lambda: service_url("sales"))
    reviews_url: str = field(default_factory=lambda: service_url("reviews"))
    notifications_url: str = field(default_factory=lambda: service_url("notifications"))
    #: The event broker (Valkey, the Redis protocol); ``make run`` starts an embedded one
    #: and sets it. The default is a local server on the standard port.
    events_url: str = ""
    #: Where the notifications service sends its mails (``smtp://host:port``); ``make run``
    #: starts a local sink (:mod:`devstack.mailsink`) and sets it.
    smtp_url: str = "smtp://127.0.0.1:1025"
    #: The sender of those mails.
    mail_from: str = "Shop <shop@localhost>"
    #: Where a background worker serves ``/metrics`` (0: nowhere); the registry's port.
    worker_metrics_port: int = field(default_factory=_worker_metrics_port)
    admin_username: str = "admin"
    admin_password: str = DEV_ADMIN_PASSWORD
    service_client_secret: str = DEV_SERVICE_CLIENT_SECRET
    #: The storefront's session-signing key (``STOREFRONT_SECRET_KEY``).
    storefront_secret_key: str = DEV_STOREFRONT_SECRET_KEY
    #: Per-service secrets (``<NAME>_CLIENT_SECRET``) that are set; the others fall back
    #: to ``service_client_secret``.
    client_secrets: dict[str, str] = field(default_factory=_client_secrets)
    #: ``SHOP_ENV``: ``production`` refuses development defaults and shared secrets.
    environment: str = "development"
    log_level: str = "INFO"
    access_log: str = "quiet"
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 7 * 24 * 3600
    http_connect_timeout_s: float = 2.0
    http_read_timeout_s: float = 5.0
    http_retries: int = 2
    jwks_cache_ttl_s: int = 300
    db_pool_size: int = 5
    db_statement_timeout_ms: int = 5_000
    request_deadline_s: float = DEFAULT_BUDGET_S
    password_hash_time_cost: int = 3
    password_hash_memory_kib: int = 12_288
    password_hash_parallelism: int = 1
    recovery_interval_s: float = 15.0
    recovery_after_s: float = 30.0
    #: Group commit in sales (:mod:`sales_service.batching`): how long a batch's leader
    #: waits for purchases it expects, the most calls in one batch (1: batching off),
    #: and how many batches of one saga step may be in the air at once.
    sales_batch_window_ms: float = 5.0
    sales_batch_max: int = 32
    sales_batch_flights: int = 1
    #: Login throttling (per account, per client address): failures within the window
    #: before a block, the first block's length (doubling with each further failure, at
    #: most the window), and registrations per address per window.
    throttle_account_failures: int = 5
    throttle_address_failures: int = 50
    throttle_registrations: int = 30
    throttle_window_s: int = 900
    throttle_block_s: int = 30
    #: How often services re-read the list of deactivated accounts (seconds).
    deactivation_refresh_s: float = 10.0
    trusted_proxies: str = ""

    @classmethod
    def from_env(cls, service_name: str, **overrides: Any) -> Settings:
        """Read every setting from the environment; ``overrides`` win over it.

        The variables are declared in :data:`shopkit.environment.ENVIRONMENT`;
        what is not set takes the field's default above.
        """
        values: dict[str, Any] = {"service_name": service_name}
        for name, variable in SETTING_VARIABLES.items():
            raw = os.environ.get(variable.name)
            if raw not in (None, ""):  # unset or empty: the field's default
                values[name] = variable.parse(variable.name, raw)
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        values.update(overrides)
        settings = cls(**values)
        settings.check_secrets()
        return settings

    @property
    def is_production(self) -> bool:
        """True with ``SHOP_ENV=production``."""
        return self.environment == PRODUCTION

    def client_secret(self, client_id: str) -> str:
        """The secret ``client_id`` authenticates with: its own, else the shared fallback."""
        return self.client_secrets.get(client_id) or self.service_client_secret

    def secret_problems(self) -> list[str]:
        """What makes these settings unfit for production (no secret values in the text)."""
        if self.service_name == "storefront":
            own = self._storefront_problems()
        elif self.service_name in SERVICE_PORTS:
            own = self._service_problems()
        else:
            return []
        return own + self._broker_problems()

    def _service_problems(self) -> list[str]:
        """A service's database, client secrets and (customers) the admin's password."""
        problems = []
        if not self.database_url:
            problems.append("DATABASE_URL is not set")
        for client in self._clients_to_check():
            variable = client_secret_variable(client)
            own = self.client_secrets.get(client)
            if not own:
                problems.append(f"{variable} is not set (the shared SERVICE_CLIENT_SECRET is used)")
            elif own in DEV_SECRETS or len(own) < MIN_SECRET_LENGTH:
                problems.append(
                    f"{variable} is a development default or shorter than {MIN_SECRET_LENGTH}"
                )
        if self.service_name == "customers":
            own_secrets = list(self.client_secrets.values())
            if len(set(own_secrets)) < len(own_secrets):
                problems.append("two or more services share one client secret")
            if self.admin_password in DEV_SECRETS or len(self.admin_password) < MIN_SECRET_LENGTH:
                problems.append(
                    f"ADMIN_PASSWORD is a development default or shorter than {MIN_SECRET_LENGTH}"
                )
        if self.service_client_secret != DEV_SERVICE_CLIENT_SECRET:
            problems.append("SERVICE_CLIENT_SECRET (one secret for every service) is set")
        password = urlsplit(self.database_url).password if self.database_url else None
        if password is not None and password in DEV_SECRETS:
            problems.append("DATABASE_URL uses a development default password")
        return problems

    def _broker_problems(self) -> list[str]:
        """A broker password that ships in this repository (Compose, the dev overlay)."""
        password = urlsplit(self.events_url).password if self.events_url else None
        if password is not None and password in DEV_SECRETS:
            return ["EVENTS_URL uses a development default password"]
        return []

    def _clients_to_check(self) -> list[str]:
        """customers checks every service's secret (it verifies them); a service its own."""
        return list(SERVICE_PORTS) if self.service_name == "customers" else [self.service_name]

    def _storefront_problems(self) -> list[str]:
        """The storefront signs sessions with its key and runs the seeder as the admin."""
        problems = []
        for variable, value in (
            ("STOREFRONT_SECRET_KEY", self.storefront_secret_key),
            ("ADMIN_PASSWORD", self.admin_password),
        ):
            if value in DEV_SECRETS or len(value) < MIN_SECRET_LENGTH:
                problems.append(
                    f"{variable} is a development default or shorter than {MIN_SECRET_LENGTH}"
                )
        return problems

    def check_secrets(self) -> None:
        """Refuse insecure production settings; otherwise warn once about development defaults.

        Raises :class:`InsecureConfiguration` in production mode. Warnings are logged once
        per process, and not at all in a gunicorn worker whose master already logged them.
        """
        problems = self.secret_problems()
        if self.is_production and problems:
            raise InsecureConfiguration(
                f"SHOP_ENV=production: {self.service_name} refuses to start: " + "; ".join(problems)
            )
        if os.environ.get(CHECKED_MARKER) or self.service_name in _warned:
            return
        _warned.add(self.service_name)
        if problems:
            log.warning(
                "development settings in use (refused with SHOP_ENV=production): %s",
                "; ".join(problems),
            )


#: The declared variable of each setting that has one (:mod:`shopkit.environment`).
SETTING_VARIABLES: dict[str, Variable] = {v.setting: v for v in ENVIRONMENT if v.setting}
