"""Configuration from the environment (12-factor), with local defaults.

Every setting has a default that makes the local run work with nothing set:
the database falls back to the embedded PostgreSQL under ``.data/``, the
service URLs to ``127.0.0.1`` on the standard ports, and the secrets to
development values (a warning is logged when those are in use).
"""

from __future__ import annotations

import logging
import os
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


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


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
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 7 * 24 * 3600
    http_connect_timeout_s: float = 2.0
    http_read_timeout_s: float = 5.0
    http_retries: int = 2
    jwks_cache_ttl_s: int = 300
    db_pool_size: int = 5
    db_statement_timeout_ms: int = 10_000
    password_hash_time_cost: int = 2
    password_hash_memory_kib: int = 19_456
    password_hash_parallelism: int = 1
    recovery_interval_s: float = 15.0
    recovery_after_s: float = 30.0

    @classmethod
    def from_env(cls, service_name: str, **overrides: Any) -> Settings:
        """Read every setting from the environment; ``overrides`` win over it."""
        values: dict[str, Any] = {
            "service_name": service_name,
            "database_url": _env("DATABASE_URL", ""),
            "data_dir": Path(_env("SHOP_DATA_DIR", str(PROJECT_ROOT / ".data"))),
            "customers_url": service_url("customers"),
            "inventory_url": service_url("inventory"),
            "sales_url": service_url("sales"),
            "reviews_url": service_url("reviews"),
            "admin_username": _env("ADMIN_USERNAME", "admin"),
            "admin_password": _env("ADMIN_PASSWORD", DEV_ADMIN_PASSWORD),
            "service_client_secret": _env("SERVICE_CLIENT_SECRET", DEV_SERVICE_CLIENT_SECRET),
            "log_level": _env("LOG_LEVEL", "INFO").upper(),
            "access_token_ttl_s": _env_int("ACCESS_TOKEN_TTL", 15 * 60),
            "refresh_token_ttl_s": _env_int("REFRESH_TOKEN_TTL", 7 * 24 * 3600),
            "http_connect_timeout_s": _env_float("HTTP_CONNECT_TIMEOUT", 2.0),
            "http_read_timeout_s": _env_float("HTTP_READ_TIMEOUT", 5.0),
            "http_retries": _env_int("HTTP_RETRIES", 2),
            "jwks_cache_ttl_s": _env_int("JWKS_CACHE_TTL", 300),
            "db_pool_size": _env_int("DB_POOL_SIZE", 5),
            "db_statement_timeout_ms": _env_int("DB_STATEMENT_TIMEOUT_MS", 10_000),
            "password_hash_time_cost": _env_int("PASSWORD_HASH_TIME_COST", 2),
            "password_hash_memory_kib": _env_int("PASSWORD_HASH_MEMORY_KIB", 19_456),
            "password_hash_parallelism": _env_int("PASSWORD_HASH_PARALLELISM", 1),
            "recovery_interval_s": _env_float("SALES_RECOVERY_INTERVAL", 15.0),
            "recovery_after_s": _env_float("SALES_RECOVERY_AFTER", 30.0),
        }
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        values.update(overrides)
        settings = cls(**values)
        settings.warn_about_dev_secrets()
        return settings

    def warn_about_dev_secrets(self) -> None:
        """Log (without the values) when development secrets are in use."""
        if self.service_client_secret == DEV_SERVICE_CLIENT_SECRET:
            log.warning("SERVICE_CLIENT_SECRET is not set: using the development default")
        if self.service_name == "customers" and self.admin_password == DEV_ADMIN_PASSWORD:
            log.warning("ADMIN_PASSWORD is not set: using the development default")
