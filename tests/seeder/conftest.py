"""Seeder tests: the CLI in-process (click's runner) against the services as real processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import create_engine, text

from seeder.cli import cli
from tests.support.database import SCHEMAS, empty_service_tables
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME
from tests.support.seeder import SERVICES, Run, ShopReader


@pytest.fixture
def seeder_stack(live_stack: Any) -> Any:
    """The services running as gunicorn processes (started once, again if they were stopped:
    :func:`tests.support.live.stop_live_relays`)."""
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
        empty_service_tables(database_url, SCHEMAS)
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


@pytest.fixture
def shop_reader(seeder_stack: Any) -> ShopReader:
    """Reads the shop through its APIs."""
    return ShopReader(seeder_stack)
