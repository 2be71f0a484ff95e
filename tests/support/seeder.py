"""The seeder's tests' helpers: running its CLI, and reading back what it made."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import requests
from click.testing import Result

from shopkit.registry import SERVICE_NAMES
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME

#: The services the seeder's tests run (every one the seeder can reach).
SERVICES = SERVICE_NAMES


Run = Callable[..., Result]


class ShopReader:
    """Reads what the seeder made through the services' APIs, for comparisons."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack

    @property
    def admin(self) -> dict[str, str]:
        """A fresh admin token (tables may have been emptied since the last one)."""
        return {"Authorization": f"Bearer {self.stack.token(ADMIN_USERNAME, ADMIN_PASSWORD)}"}

    def _all(self, service: str, path: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        headers = self.admin
        page = 1
        while True:
            response = requests.get(
                self.stack.url(service) + path,
                params={**params, "page": page, "page_size": 100},
                headers=headers,
                timeout=10,
            )
            assert response.status_code == 200, response.text
            body = response.json()
            items += body["items"]
            if page * 100 >= body["total"]:
                return items
            page += 1

    def customers(self) -> list[dict[str, Any]]:
        """Every seeded customer (not the admin), without ids and timestamps, by username."""
        rows = [
            {k: v for k, v in c.items() if k not in ("id", "created_at")}
            for c in self._all("customers", "/customers")
            if c["username"] != ADMIN_USERNAME
        ]
        return sorted(rows, key=lambda c: c["username"])

    def products(self) -> list[dict[str, Any]]:
        """Every product, without ids and timestamps, by description (it ends with the SKU)."""
        rows = [
            {k: v for k, v in p.items() if k not in ("id", "created_at", "updated_at")}
            for p in self._all("inventory", "/products")
        ]
        return sorted(rows, key=lambda p: p["description"])

    def sales(self) -> list[dict[str, Any]]:
        """Every sale (admin list)."""
        return self._all("sales", "/sales")

    def balance_total(self) -> Decimal:
        """The money in all seeded wallets."""
        return sum((Decimal(c["balance"]) for c in self.customers()), Decimal(0))
