"""Where the services are and who the admin is: the environment, overridden by flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

#: Service name → (environment variable, default URL).
SERVICE_URLS = {
    "customers": ("CUSTOMERS_URL", "http://127.0.0.1:5000"),
    "inventory": ("INVENTORY_URL", "http://127.0.0.1:5001"),
    "sales": ("SALES_URL", "http://127.0.0.1:5002"),
    "reviews": ("REVIEWS_URL", "http://127.0.0.1:5003"),
}
DEFAULT_ADMIN_USERNAME = "admin"
DEFAULT_ADMIN_PASSWORD = "admin-password"  # noqa: S105 (the documented development default)


def _env_url(service: str) -> str:
    variable, default = SERVICE_URLS[service]
    return (os.environ.get(variable) or default).rstrip("/")


@dataclass(frozen=True)
class Config:
    """Service URLs, admin credentials and HTTP timeouts of one seeder run."""

    customers_url: str = field(default_factory=lambda: _env_url("customers"))
    inventory_url: str = field(default_factory=lambda: _env_url("inventory"))
    sales_url: str = field(default_factory=lambda: _env_url("sales"))
    reviews_url: str = field(default_factory=lambda: _env_url("reviews"))
    admin_username: str = field(
        default_factory=lambda: os.environ.get("ADMIN_USERNAME") or DEFAULT_ADMIN_USERNAME
    )
    admin_password: str = field(
        default_factory=lambda: os.environ.get("ADMIN_PASSWORD") or DEFAULT_ADMIN_PASSWORD
    )
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 30.0

    def url(self, service: str) -> str:
        """Base URL of ``service`` (``customers``, ``inventory``, ``sales`` or ``reviews``)."""
        return str(getattr(self, f"{service}_url")).rstrip("/")

    @classmethod
    def from_env(cls, **overrides: object) -> Config:
        """The environment's configuration; ``overrides`` that are not ``None`` win."""
        values = {name: value for name, value in overrides.items() if value is not None}
        for name in ("customers_url", "inventory_url", "sales_url", "reviews_url"):
            if name in values:
                values[name] = str(values[name]).rstrip("/")
        return cls(**values)  # type: ignore[arg-type]
