"""Fixtures of the storefront's tests: a fake of the services at their HTTP boundary.

The unit tests build the real storefront app with a
:class:`tests.support.storefront.FakeServices`
transport instead of :class:`storefront.clients.HttpTransport`: every call
the storefront makes to a service is recorded and answered from canned
responses, so a test states exactly what the services say and checks what
the page does with it. The browser tests share the module fixtures at the end: every
service and the storefront as processes, and a headless Chromium.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from selenium.webdriver.remote.webdriver import WebDriver

from shopkit.config import Settings
from shopkit.registry import SERVICE_NAMES
from tests.support.browser import SCREENSHOTS
from tests.support.chromium import headless_chromium
from tests.support.storefront import FakeServices, log_in


@pytest.fixture
def fake() -> FakeServices:
    """The services, faked at their HTTP boundary."""
    services = FakeServices()
    for name in SERVICE_NAMES:
        services.on(name, "GET", "/readyz", 200, {"status": "ready", "schema_revision": "0001"})
    return services


@pytest.fixture
def make_app(fake: FakeServices) -> Callable[..., Flask]:
    """Build the storefront app on the fake (CSRF off unless asked for)."""

    def build(**config: Any) -> Flask:
        values = {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "WTF_CSRF_ENABLED": False,
            "SETTINGS": Settings.from_env("storefront", log_level="WARNING"),
            "TRANSPORT": fake,
            **config,
        }
        from storefront import create_app

        return create_app(values)

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """The storefront app on the fake, CSRF off."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A browser without a session."""
    return app.test_client()


@pytest.fixture
def shopper(client: FlaskClient, fake: FakeServices) -> str:
    """``client`` logged in as the customer ``ada``; returns her access token."""
    return log_in(client, fake, "ada")


@pytest.fixture
def admin(client: FlaskClient, fake: FakeServices) -> str:
    """``client`` logged in as an admin; returns the access token."""
    return log_in(client, fake, "root", role="admin")


# --- the browser tests: every service as a process, and Chromium ---------------------------


@pytest.fixture(scope="module")
def storefront(live_stack: Any) -> str:
    """Every service and the storefront, running; the storefront's URL."""
    for service in SERVICE_NAMES:
        live_stack.start(service)
    secret = {"STOREFRONT_SECRET_KEY": "browser-test-secret"}
    return str(live_stack.start("storefront", workers=1, extra_env=secret).url)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium from the distribution, with a fresh profile."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with headless_chromium("--window-size=1280,1000") as driver:
        yield driver
