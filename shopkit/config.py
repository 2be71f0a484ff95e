"""Configuration from the environment (12-factor), with local defaults.

Every setting has a default that makes the local run work with nothing set:
the database falls back to the embedded PostgreSQL under ``.data/``, the
service URLs to ``127.0.0.1`` on the standard ports, and the secrets to
development values (a warning is logged when those are in use).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Repository root (the parent of this package), where ``.data/`` lives by default.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEV_SERVICE_CLIENT_SECRET = "dev-service-secret-change-me"  # noqa: S105 (documented dev default)
DEV_ADMIN_PASSWORD = "admin-password"  # noqa: S105 (documented dev default)

SERVICE_PORTS = {"customers": 5000, "inventory": 5001, "sales": 5002, "reviews": 5003}


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _number(kind: type[int] | type[float]) -> Callable[[str, str], Any]:
    """A parser of ``kind`` whose error names the variable."""

    def parse(name: str, raw: str) -> Any:
        try:
            return kind(raw)
        except ValueError as exc:
            article = "an integer" if kind is int else "a number"
            raise ValueError(f"{name} must be {article}, got {raw!r}") from exc

    return parse


def _text(_name: str, raw: str) -> str:
    return raw


def service_url(service: str) -> str:
    """``<SERVICE>_URL`` from the environment, else ``http://127.0.0.1:<its port>``."""
    return _env(f"{service.upper()}_URL", f"http://127.0.0.1:{SERVICE_PORTS[service]}").rstrip("/")


@dataclass(frozen=True)
class Settings:
    """All runtime settings of a service, read once from the environment.

    ``database_url`` is empty when ``DATABASE_URL`` is unset: the database
    layer then starts (or joins) the embedded PostgreSQL in ``data_dir``.
    """

    service_name: str
    database_url: str = ""
    data_dir: Path = PROJECT_ROOT / ".data"
    customers_url: str = field(default_factory=lambda: service_url("customers"))
    inventory_url: str = field(default_factory=lambda: service_url("inventory"))
    sales_url: str = field(default_factory=lambda: service_url("sales"))
    reviews_url: str = field(default_factory=lambda: service_url("reviews"))
    admin_username: str = "admin"
    admin_password: str = DEV_ADMIN_PASSWORD
    service_client_secret: str = DEV_SERVICE_CLIENT_SECRET
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
    request_deadline_s: float = 8.0
    password_hash_time_cost: int = 2
    password_hash_memory_kib: int = 19_456
    password_hash_parallelism: int = 1
    recovery_interval_s: float = 15.0
    recovery_after_s: float = 30.0
    trusted_proxies: str = ""

    @classmethod
    def from_env(cls, service_name: str, **overrides: Any) -> Settings:
        """Read every setting from the environment; ``overrides`` win over it.

        What is not set takes the field's default above (the service URLs read
        ``<SERVICE>_URL`` themselves, through :func:`service_url`).
        """
        values: dict[str, Any] = {"service_name": service_name}
        for name, (variable, parse) in _FROM_ENVIRONMENT.items():
            raw = os.environ.get(variable)
            if raw not in (None, ""):  # unset or empty: the field's default
                values[name] = parse(variable, raw)
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        values.update(overrides)
        settings = cls(**values)
        settings.warn_about_dev_secrets()
        return settings

    def warn_about_dev_secrets(self) -> None:
        """Log (without the values) when development secrets are in use, each warning once.

        Once per process, and not at all in a process whose parent already
        warned about the environment it passed on (:data:`WARNED_ENV`): the
        ``make run`` launcher, or a gunicorn worker after the first. The service
        secret only where it is used: by the four services (the storefront, the
        seeder and the launcher never ask for a service token).
        """
        uses_service_secret = self.service_name in SERVICE_PORTS
        if uses_service_secret and self.service_client_secret == DEV_SERVICE_CLIENT_SECRET:
            _warn_once("SERVICE_CLIENT_SECRET is not set: using the development default")
        if (
            self.service_name in ("customers", "launcher")
            and self.admin_password == DEV_ADMIN_PASSWORD
        ):
            _warn_once("ADMIN_PASSWORD is not set: using the development default")


#: Set (to 1) in the environment of processes whose parent already warned about it.
WARNED_ENV = "SHOP_CONFIG_WARNED"
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message in _warned or os.environ.get(WARNED_ENV):
        return
    _warned.add(message)
    log.warning(message)


#: The environment variable of each setting that has one, and how to read it.
_FROM_ENVIRONMENT: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "database_url": ("DATABASE_URL", _text),
    "data_dir": ("SHOP_DATA_DIR", lambda _name, raw: Path(raw)),
    "admin_username": ("ADMIN_USERNAME", _text),
    "admin_password": ("ADMIN_PASSWORD", _text),
    "service_client_secret": ("SERVICE_CLIENT_SECRET", _text),
    "log_level": ("LOG_LEVEL", lambda _name, raw: raw.upper()),
    "access_log": ("ACCESS_LOG", lambda _name, raw: raw.lower()),
    "access_token_ttl_s": ("ACCESS_TOKEN_TTL", _number(int)),
    "refresh_token_ttl_s": ("REFRESH_TOKEN_TTL", _number(int)),
    "http_connect_timeout_s": ("HTTP_CONNECT_TIMEOUT", _number(float)),
    "http_read_timeout_s": ("HTTP_READ_TIMEOUT", _number(float)),
    "http_retries": ("HTTP_RETRIES", _number(int)),
    "jwks_cache_ttl_s": ("JWKS_CACHE_TTL", _number(int)),
    "db_pool_size": ("DB_POOL_SIZE", _number(int)),
    "db_statement_timeout_ms": ("DB_STATEMENT_TIMEOUT_MS", _number(int)),
    "request_deadline_s": ("REQUEST_DEADLINE", _number(float)),
    "password_hash_time_cost": ("PASSWORD_HASH_TIME_COST", _number(int)),
    "password_hash_memory_kib": ("PASSWORD_HASH_MEMORY_KIB", _number(int)),
    "password_hash_parallelism": ("PASSWORD_HASH_PARALLELISM", _number(int)),
    "recovery_interval_s": ("SALES_RECOVERY_INTERVAL", _number(float)),
    "recovery_after_s": ("SALES_RECOVERY_AFTER", _number(float)),
    "trusted_proxies": ("TRUSTED_PROXIES", _text),
}
