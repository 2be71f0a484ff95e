"""Where the services are and who the admin is: the environment, overridden by flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

# The same defaults as the services themselves, so a local run needs no configuration.
from shopkit.config import DEV_ADMIN_PASSWORD as DEFAULT_ADMIN_PASSWORD
from shopkit.config import service_url as _env_url
from shopkit.registry import SERVICE_NAMES

DEFAULT_ADMIN_USERNAME = "admin"
#: The fields of the services' URLs: one per service of the registry (``customers_url``...).
URL_FIELDS = tuple(f"{name}_url" for name in SERVICE_NAMES)


@dataclass(frozen=True)
class Config:
    """Service URLs, admin credentials and HTTP timeouts of one seeder run."""

    customers_url: str = field(default_factory=lambda: _env_url("customers"))
    inventory_url: str = field(default_factory=lambda: _env_url("inventory"))
    sales_url: str = field(default_factory=lambda: _env_url("sales"))
    reviews_url: str = field(default_factory=lambda: _env_url("reviews"))
    notifications_url: str = field(default_factory=lambda: _env_url("notifications"))
    admin_username: str = field(
        default_factory=lambda: os.environ.get("ADMIN_USERNAME") or DEFAULT_ADMIN_USERNAME
    )
    admin_password: str = field(
        default_factory=lambda: os.environ.get("ADMIN_PASSWORD") or DEFAULT_ADMIN_PASSWORD
    )
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 30.0

    @classmethod
    def from_env(cls, **overrides: object) -> Config:
        """The environment's configuration; ``overrides`` that are not ``None`` win."""
        values = {name: value for name, value in overrides.items() if value is not None}
        for name in URL_FIELDS:
            if name in values:
                values[name] = str(values[name]).rstrip("/")
        return cls(**values)  # type: ignore[arg-type]
