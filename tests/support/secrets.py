"""What production mode asks of each app's environment, found by asking the code itself.

The deployment tests (Kubernetes, Compose) compare their files against these, so a
change to :meth:`shopkit.config.Settings.secret_problems` — a service that starts to need
another service's secret, say — fails them until the manifests follow.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace

from shopkit import config
from shopkit.config import (
    DEV_ADMIN_PASSWORD,
    PRODUCTION,
    SERVICE_PORTS,
    Settings,
    client_secret_variable,
)

#: The variable behind a setting, as :meth:`Settings.from_env` reads it.
ADMIN_PASSWORD = config.SETTING_VARIABLES["admin_password"].name
SHOP_ENV = config.SETTING_VARIABLES["environment"].name
SHARED_SECRET = config.SETTING_VARIABLES["service_client_secret"].name


def placeholder(name: str) -> str:
    """A secret value production mode accepts (not a development default, long enough)."""
    return f"placeholder-{name.lower()}-0123456789abcdef"


def production_secret_variables(service: str) -> set[str]:
    """The secret variables ``service`` must be given in production mode.

    Found by trial: starting from settings with every per-service secret and the admin
    password set to acceptable values (no problems), drop one at a time and keep those
    whose absence :meth:`Settings.secret_problems` reports.
    """
    secrets = {client: placeholder(client) for client in SERVICE_PORTS}
    complete = Settings(
        service_name=service,
        environment=PRODUCTION,
        client_secrets=secrets,
        admin_password=placeholder("admin"),
        database_url=f"postgresql://app:{placeholder('database')}@db/shop",
        storefront_secret_key=placeholder("storefront"),
    )
    assert complete.secret_problems() == [], complete.secret_problems()
    needed = set()
    for client in SERVICE_PORTS:
        without = {name: value for name, value in secrets.items() if name != client}
        if replace(complete, client_secrets=without).secret_problems():
            needed.add(client_secret_variable(client))
    for setting, weak in (
        ("admin_password", DEV_ADMIN_PASSWORD),
        ("database_url", ""),
        ("storefront_secret_key", ""),
    ):
        if replace(complete, **{setting: weak}).secret_problems():
            needed.add(config.SETTING_VARIABLES[setting].name)
    return needed


def settings_variables() -> set[str]:
    """Every variable :meth:`Settings.from_env` reads, the per-service secrets included."""
    names = {variable.name for variable in config.SETTING_VARIABLES.values()}
    return names | {client_secret_variable(name) for name in SERVICE_PORTS}


@contextmanager
def only_these_settings(env: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with every settings variable replaced by ``env``'s (restored after)."""
    saved = dict(os.environ)
    try:
        for name in settings_variables() | {f"{s.upper()}_URL" for s in SERVICE_PORTS}:
            os.environ.pop(name, None)
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
