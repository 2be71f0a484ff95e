"""Every service in-process on the test database, and one token per kind of caller.

The services' own calls to each other go to a port nobody listens on (an
unreachable dependency answers 503 at once): these tests are about who may
call what, not about what happens next.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shopkit.auth import SERVICES
from shopkit.config import Settings
from shopkit.registry import app
from tests.support.access import Callers, NobodyDeactivated
from tests.support.database import free_port
from tests.support.identity import Identity, bearer, customer_payload


@pytest.fixture(scope="session")
def service_apps(
    customers_app: Flask, make_settings: Callable[..., Settings], key_resolver: Any
) -> dict[str, Flask]:
    """customers (the shared app) and the other services, built in-process."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    apps = {"customers": customers_app}
    for service in ("inventory", "sales", "reviews", "notifications"):
        settings = make_settings(
            service,
            customers_url=nowhere,
            inventory_url=nowhere,
            sales_url=nowhere,
            http_retries=0,
            http_connect_timeout_s=0.5,
        )
        module = importlib.import_module(app(service).package)
        apps[service] = module.create_app(
            {
                "SETTINGS": settings,
                "KEY_RESOLVER": key_resolver,
                "DEACTIVATED_ACCOUNTS": NobodyDeactivated(),
                "SALES_RECOVERY": False,
                "TESTING": True,
            }
        )
    return apps


@pytest.fixture
def callers(identity: Identity, customers: FlaskClient) -> Callers:
    """Fresh tokens: two customers, the admin and each service."""
    admin = identity.admin_token()
    people = []
    for _ in range(2):  # bulk-created: registrations from one address are throttled
        profile = customer_payload()
        response = customers.post(
            "/customers/batch", json={"customers": [profile]}, headers=bearer(admin)
        )
        assert response.status_code == 201, response.get_json()
        people.append(
            (profile["username"], identity.token(profile["username"], profile["password"]))
        )
    headers: dict[str, dict[str, str]] = {
        "anonymous": {},
        "customer": bearer(people[0][1]),
        "other_customer": bearer(people[1][1]),
        "admin": bearer(admin),
    }
    for service in SERVICES:
        headers[service] = bearer(identity.service_token(service))
    return Callers(headers, people[0][0], people[1][0])
