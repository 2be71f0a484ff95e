"""Seeder tests: the CLI in-process (click's runner) against the services as real processes."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import create_engine, text

from seeder.cli import cli
from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, SCHEMAS
from tests.support.database import truncate_all

SERVICES = ("customers", "inventory", "sales", "reviews")


@pytest.fixture(scope="session")
def seeder_stack(live_stack: Any) -> Any:
    """All four services running as gunicorn processes for the whole session."""
    for service in SERVICES:
        live_stack.start(service)
    return live_stack


@pytest.fixture
def seeder_env(seeder_stack: Any) -> dict[str, str]:
    """The environment the seeder reads: service URLs and the admin's credentials."""
    return {
        **{f"{name.upper()}_URL": seeder_stack.url(name) for name in SERVICES},
        "ADMIN_USERNAME": ADMIN_USERNAME,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
    }


Run = Callable[..., Result]


@pytest.fixture
def run_seeder(seeder_env: dict[str, str]) -> Run:
    """Run ``python -m seeder <args>`` in-process; ``env`` overrides the seeder's environment."""
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(
            cli, list(args), env={**seeder_env, **(env or {})}, prog_name="python -m seeder"
        )

    return run


@pytest.fixture
def reset_shop(database_url: str, customers_app: Flask) -> Callable[[], None]:
    """Empty every table again in the middle of a test (a fresh database; the admin kept)."""
    from customers_service import bootstrap

    def reset() -> None:
        truncate_all(database_url, SCHEMAS)
        bootstrap(customers_app)

    return reset


@pytest.fixture
def sql(database_url: str) -> Callable[..., list[Any]]:
    """Run SQL on the test database (tests may touch it; the seeder never does)."""
    engine = create_engine(database_url)

    def run(statement: str, **params: Any) -> list[Any]:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return list(result.all()) if result.returns_rows else []

    yield run  # type: ignore[misc]
    engine.dispose()


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


@pytest.fixture
def shop_reader(seeder_stack: Any) -> ShopReader:
    """Reads the shop through its APIs."""
    return ShopReader(seeder_stack)
