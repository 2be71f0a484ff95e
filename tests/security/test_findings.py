"""The outside review's findings (issue 14), each reproduced against the in-process apps.

The figures (flood latency, timing medians) are measured by bench/security_bench.py,
never here: these tests check the mechanisms.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import yaml
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from customers_service.passwords import Passwords
from shopkit.auth import ALGORITHM, AUDIENCE, ISSUER
from shopkit.config import (
    CHECKED_MARKER,
    DEV_SECRETS,
    PROJECT_ROOT,
    InsecureConfiguration,
    Settings,
    _warned,
)
from shopkit.registry import SERVICE_NAMES
from tests.support.access import concrete_path, operations
from tests.support.identity import (
    ADMIN_PASSWORD,
    SERVICE_SECRET,
    Identity,
    bearer,
    customer_payload,
)

# --- 1. per-service identities ------------------------------------------------------------


def test_a_service_token_names_its_service_and_others_are_forbidden(
    customers: FlaskClient, identity: Identity
) -> None:
    profile, _ = identity.new_customer()
    body = {"customer_id": profile["id"], "amount": "1.00", "sale_id": str(uuid.uuid4())}
    headers = {"Idempotency-Key": "k-1"}
    refused = customers.post(
        "/internal/wallet-debits",
        json=body,
        headers={**headers, **bearer(identity.service_token("reviews"))},
    )
    assert refused.status_code == 403
    assert refused.get_json()["code"] == "forbidden_caller"
    allowed = customers.post(
        "/internal/wallet-debits",
        json=body,
        headers={**headers, **bearer(identity.service_token("sales"))},
    )
    assert allowed.status_code == 409  # reached the wallet: nothing to debit
    assert allowed.get_json()["code"] == "insufficient_funds"


def test_each_service_has_its_own_secret(make_settings: Any) -> None:
    from customers_service import create_app

    app = create_app(
        {
            "SETTINGS": make_settings(
                "customers", client_secrets={"sales": "sales-own-secret-0123456789"}
            ),
            "TESTING": True,
        }
    )
    client = app.test_client()

    def grant(client_id: str, secret: str) -> int:
        body = {"client_id": client_id, "client_secret": secret}
        return client.post("/auth/service-token", json=body).status_code

    assert grant("sales", "sales-own-secret-0123456789") == 200
    assert grant("sales", SERVICE_SECRET) == 401  # the shared secret no longer opens sales
    assert grant("reviews", SERVICE_SECRET) == 200  # reviews still uses the fallback
    assert grant("reviews", "sales-own-secret-0123456789") == 401


# --- 2. throttling ------------------------------------------------------------------------


def _login(client: FlaskClient, username: str, password: str) -> Any:
    return client.post("/auth/login", json={"username": username, "password": password})


def test_wrong_passwords_block_the_account_in_every_process(
    customers: FlaskClient, identity: Identity, make_settings: Any
) -> None:
    from customers_service import create_app

    profile = identity.register()
    for _ in range(5):
        assert _login(customers, profile["username"], "wrong-password").status_code == 401
    blocked = _login(customers, profile["username"], profile["password"])
    assert blocked.status_code == 429
    assert blocked.get_json()["code"] == "too_many_attempts"
    assert int(blocked.headers["Retry-After"]) >= 1
    # Another process (another app, nothing shared but the database) sees the same block.
    other = create_app({"SETTINGS": make_settings("customers"), "TESTING": True}).test_client()
    assert _login(other, profile["username"], profile["password"]).status_code == 429
    # Other accounts are not affected.
    second = identity.register()
    assert _login(other, second["username"], second["password"]).status_code == 200


def test_a_known_block_is_refused_before_the_app(
    customers_app: Flask, customers: FlaskClient, identity: Identity
) -> None:
    """A flood's requests cost no parsing, session, SQL or hash once this process saw the block."""
    profile = identity.register()
    for _ in range(5):
        assert _login(customers, profile["username"], "wrong-password").status_code == 401
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    engine = customers_app.extensions["shop_db"].engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        blocked = customers.post(
            "/auth/login",
            json={"username": profile["username"].upper(), "password": profile["password"]},
            headers={"X-Request-ID": "flood-1"},
        )
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert statements == []
    assert blocked.status_code == 429
    assert blocked.mimetype == "application/problem+json"
    body = blocked.get_json()
    assert body["code"] == "too_many_attempts" and body["request_id"] == "flood-1"
    assert body["retry_after"] == int(blocked.headers["Retry-After"]) >= 1
    assert blocked.headers["X-Request-ID"] == "flood-1"
    assert blocked.headers["X-Content-Type-Options"] == "nosniff"
    # Requests the gate does not refuse reach the app with their body intact.
    second = identity.register()
    assert _login(customers, second["username"], second["password"]).status_code == 200
    broken = customers.post(
        "/auth/login", data='{"username": "' + profile["username"], content_type="application/json"
    )
    assert broken.status_code == 400 and broken.get_json()["code"] == "malformed_json"


def test_unknown_usernames_are_throttled_like_real_ones(customers: FlaskClient) -> None:
    answers = [_login(customers, "nobody_here", "wrong-password").status_code for _ in range(6)]
    assert answers == [401] * 5 + [429]


def test_a_success_clears_the_account_count(customers: FlaskClient, identity: Identity) -> None:
    profile = identity.register()
    for _ in range(4):
        _login(customers, profile["username"], "wrong-password")
    assert _login(customers, profile["username"], profile["password"]).status_code == 200
    for _ in range(4):
        assert _login(customers, profile["username"], "wrong-password").status_code == 401


def test_wrong_service_secrets_are_throttled(customers: FlaskClient) -> None:
    body = {"client_id": "sales", "client_secret": "guess"}
    answers = [customers.post("/auth/service-token", json=body).status_code for _ in range(6)]
    assert answers == [401] * 5 + [429]
    right = {"client_id": "sales", "client_secret": SERVICE_SECRET}
    assert customers.post("/auth/service-token", json=right).status_code == 429


def test_the_address_limit_covers_many_accounts(customers_app: Flask, make_settings: Any) -> None:
    from customers_service import create_app

    app = create_app(
        {"SETTINGS": make_settings("customers", throttle_address_failures=3), "TESTING": True}
    )
    client = app.test_client()
    answers = [_login(client, f"someone_{i}", "wrong").status_code for i in range(4)]
    assert answers == [401, 401, 401, 429]
    other_address = client.post(
        "/auth/login",
        json={"username": "someone_9", "password": "wrong"},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert other_address.status_code == 401


def test_registrations_are_throttled_per_address(make_settings: Any) -> None:
    from customers_service import create_app

    app = create_app(
        {"SETTINGS": make_settings("customers", throttle_registrations=2), "TESTING": True}
    )
    client = app.test_client()
    answers = [client.post("/customers", json=customer_payload()).status_code for _ in range(3)]
    assert answers == [201, 201, 429]


# --- 3. timing: every verification costs one full-cost verification -----------------------


def test_a_bulk_account_costs_a_full_verification(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    passwords = Passwords(make_settings("customers"))
    full_cost = []
    real_verify = PasswordHasher.verify

    def spy(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
        if not passwords.needs_rehash(password_hash):
            full_cost.append(password_hash)
        return real_verify(hasher, password_hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", spy)
    bulk = passwords.hash_bulk("the-password")
    normal = passwords.hash("the-password")
    for stored in (bulk, normal, None):
        full_cost.clear()
        assert passwords.verify(stored, "wrong-password") is False
        assert len(full_cost) == 1, stored
    assert passwords.verify(bulk, "the-password") is True


# --- 4. hostile bodies: a 4xx everywhere, never a 500 ---------------------------------------


def _every_operation(apps: dict[str, Flask]) -> list[tuple[str, Flask, str, str]]:
    return [
        (service, app, method, concrete_path(path, operation, "someone"))
        for service, app in apps.items()
        for method, path, operation in operations(app)
    ]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("[" * 329 + "]" * 329, "too_deeply_nested"),
        ('{"a":' * 40 + "1" + "}" * 40, "too_deeply_nested"),
        ("[" * 100_000, "too_deeply_nested"),
        ('{"amount": ' + "9" * 5000 + "}", "malformed_json"),
    ],
    ids=["329-levels", "40-objects", "100k-open", "5000-digits"],
)
def test_hostile_json_is_a_400_on_every_operation(
    service_apps: dict[str, Flask], body: str, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    for service, app, method, path in _every_operation(service_apps):
        response = app.test_client().open(
            path, method=method, data=body, content_type="application/json"
        )
        assert response.status_code == 400, (service, method, path, response.status_code)
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["code"] == code
    assert not [r for r in caplog.records if r.exc_info], "no traceback is logged"


def test_patch_without_a_body_is_refused(customers: FlaskClient, identity: Identity) -> None:
    profile, token = identity.new_customer()
    path = f"/customers/{profile['username']}"
    for kwargs in ({}, {"json": {}}):
        response = customers.patch(path, headers=bearer(token), **kwargs)
        assert response.status_code == 422, kwargs
        assert response.get_json()["code"] == "validation_error"


# --- 7. full matches ----------------------------------------------------------------------


def test_a_trailing_newline_never_passes_a_pattern(
    customers: FlaskClient, identity: Identity
) -> None:
    taken = identity.register()
    look_alike = customer_payload(taken["username"] + "\n")
    look_alike["email"] = "other@example.com"
    assert customers.post("/customers", json=look_alike).status_code == 422
    profile, token = identity.new_customer()
    response = customers.post(
        f"/customers/{profile['username']}/wallet/charge",
        json={"amount": "1.0\n"},
        headers=bearer(token),
    )
    assert response.status_code == 422


# --- 8. secrets and production mode ---------------------------------------------------------


def test_every_shipped_default_is_recognised() -> None:
    compose = (PROJECT_ROOT / "docker-compose.yml").read_text()
    defaults = re.findall(r"_(?:SECRET|PASSWORD|SECRET_KEY):-([^}]+)\}", compose)
    assert "change-me-in-production" not in compose  # one development default, recognised
    assert {"dev-service-secret-change-me", "admin-password"} <= set(defaults)
    assert set(defaults) <= DEV_SECRETS
    assert "change-me-in-production" in DEV_SECRETS  # older checkouts' Compose default


def test_compose_publishes_ports_on_loopback_unless_told() -> None:
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    for name in ("customers", "inventory", "sales", "reviews"):
        for port in compose["services"][name].get("ports", []):
            assert port.startswith("${SHOP_BIND_ADDRESS:-127.0.0.1}:"), (name, port)


def _production(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name in (
        "SERVICE_CLIENT_SECRET",
        "ADMIN_PASSWORD",
        "DATABASE_URL",
        "STOREFRONT_SECRET_KEY",
        "EVENTS_URL",
        *(f"{s}_CLIENT_SECRET" for s in ("CUSTOMERS", "INVENTORY", "SALES", "REVIEWS")),
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SHOP_ENV", "production")
    for name, value in env.items():
        monkeypatch.setenv(name, value)


GOOD = {
    "CUSTOMERS_CLIENT_SECRET": "c" * 32,
    "INVENTORY_CLIENT_SECRET": "i" * 32,
    "SALES_CLIENT_SECRET": "s" * 32,
    "REVIEWS_CLIENT_SECRET": "r" * 32,
    "NOTIFICATIONS_CLIENT_SECRET": "n" * 32,
    "ADMIN_PASSWORD": "a-long-admin-password",
    "DATABASE_URL": "postgresql://sales_svc:a-long-database-password@db/shop",
    "STOREFRONT_SECRET_KEY": "k" * 32,
}


@pytest.mark.parametrize(
    ("service", "env", "message"),
    [
        ("sales", {}, "SALES_CLIENT_SECRET is not set"),
        ("sales", {"SALES_CLIENT_SECRET": "change-me-in-production"}, "development default"),
        ("sales", {**GOOD, "SERVICE_CLIENT_SECRET": "x" * 32}, "SERVICE_CLIENT_SECRET"),
        ("customers", {**GOOD, "ADMIN_PASSWORD": "admin-password"}, "ADMIN_PASSWORD"),
        ("customers", {**GOOD, "SALES_CLIENT_SECRET": "r" * 32}, "share one client secret"),
        (
            "sales",
            {**GOOD, "DATABASE_URL": "postgresql://sales_svc:sales@db/shop"},
            "DATABASE_URL",
        ),
        ("sales", {**GOOD, "DATABASE_URL": ""}, "DATABASE_URL is not set"),
        ("storefront", {**GOOD, "STOREFRONT_SECRET_KEY": ""}, "STOREFRONT_SECRET_KEY"),
        (
            "storefront",
            {**GOOD, "STOREFRONT_SECRET_KEY": "dev-storefront-secret-change-me"},
            "STOREFRONT_SECRET_KEY",
        ),
        ("storefront", {**GOOD, "ADMIN_PASSWORD": "admin-password"}, "ADMIN_PASSWORD"),
        # The broker users' passwords of Compose and the dev overlay (docs/events.rst).
        (
            "sales",
            {**GOOD, "EVENTS_URL": "redis://:dev-broker-password-change-me@valkey:6379/0"},
            "EVENTS_URL",
        ),
        (
            "storefront",
            {
                **GOOD,
                "EVENTS_URL": "redis://storefront:dev-storefront-broker-password-change-me"
                "@valkey:6379/0",
            },
            "EVENTS_URL",
        ),
    ],
)
def test_production_mode_refuses_insecure_settings(
    monkeypatch: pytest.MonkeyPatch, service: str, env: dict[str, str], message: str
) -> None:
    _production(monkeypatch, **env)
    with pytest.raises(InsecureConfiguration, match=message):
        Settings.from_env(service)


def test_production_mode_accepts_own_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    _production(monkeypatch, **GOOD)
    for service in (*SERVICE_NAMES, "storefront"):
        assert Settings.from_env(service).is_production


def test_development_warnings_once_per_service(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("SHOP_ENV", raising=False)
    monkeypatch.delenv(CHECKED_MARKER, raising=False)
    _warned.discard("inventory")
    with caplog.at_level(logging.WARNING, logger="shopkit.config"):
        Settings.from_env("inventory")
        Settings.from_env("inventory")
    assert len([r for r in caplog.records if "development settings" in r.message]) == 1
    caplog.clear()
    _warned.discard("inventory")
    monkeypatch.setenv(CHECKED_MARKER, "1")  # a worker whose gunicorn master already warned
    with caplog.at_level(logging.WARNING, logger="shopkit.config"):
        Settings.from_env("inventory")
    assert caplog.records == []


# --- 9. smaller ones ------------------------------------------------------------------------


def _signed(customers_app: Flask, lifetime: timedelta) -> str:
    kid, key = customers_app.extensions["customers_keys"].signing_key()
    now = datetime.now(UTC)
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "admin",
        "role": "admin",
        "typ": "access",
        "iat": now,
        "exp": now + lifetime,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})


def test_a_token_living_longer_than_the_ttl_is_refused(
    customers: FlaskClient, customers_app: Flask
) -> None:
    ten_years = _signed(customers_app, timedelta(days=3650))
    response = customers.get("/customers", headers=bearer(ten_years))
    assert response.status_code == 401
    assert response.get_json()["code"] == "invalid_token"
    normal = _signed(customers_app, timedelta(minutes=15))
    assert customers.get("/customers", headers=bearer(normal)).status_code == 200


def test_hardening_headers(customers: FlaskClient) -> None:
    api = customers.get("/.well-known/jwks.json")
    assert api.headers["X-Content-Type-Options"] == "nosniff"
    assert api.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in api.headers["Content-Security-Policy"]
    page = customers.get("/docs")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self' 'sha256-" in policy
    assert "unsafe-inline" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert "frame-ancestors 'none'" in policy


def test_an_empty_idempotency_key_is_refused(customers: FlaskClient, identity: Identity) -> None:
    profile, token = identity.new_customer()
    response = customers.post(
        f"/customers/{profile['username']}/wallet/charge",
        json={"amount": "5.00"},
        headers={**bearer(token), "Idempotency-Key": ""},
    )
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_idempotency_key"
    balance = customers.get(f"/customers/{profile['username']}", headers=bearer(token))
    assert balance.get_json()["balance"] == "0.00"


@pytest.mark.parametrize(
    ("service", "who", "path", "body"),
    [
        (
            "customers",
            "admin",
            "/customers/{customer}/wallet/deduct",
            {"amount": "1.00", "reason": "x"},
        ),
        ("inventory", "admin", "/products/1/restock", {"quantity": 1}),
        ("inventory", "admin", "/products/1/deduct", {"quantity": 1}),
        ("inventory", "sales", f"/internal/reservations/{uuid.uuid4()}/release", None),
    ],
    ids=["wallet-deduct", "restock", "stock-deduct", "release"],
)
def test_an_empty_idempotency_key_is_refused_everywhere(
    service_apps: dict[str, Flask],
    callers: Any,
    service: str,
    who: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    response = (
        service_apps[service]
        .test_client()
        .post(
            path.format(customer=callers.customer),
            json=body,
            headers={**callers.headers[who], "Idempotency-Key": ""},
        )
    )
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["code"] == "invalid_idempotency_key"


# --- Also: logout, password change, reactivation --------------------------------------------


def test_logout_revokes_the_refresh_family(customers: FlaskClient, identity: Identity) -> None:
    profile = identity.register()
    first = identity.login(profile["username"], profile["password"])
    other_device = identity.login(profile["username"], profile["password"])
    rotated = customers.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200
    logout = customers.post("/auth/logout", json={"refresh_token": first["refresh_token"]})
    assert logout.status_code == 204
    elsewhere = customers.post(
        "/auth/refresh", json={"refresh_token": other_device["refresh_token"]}
    )
    assert elsewhere.status_code == 200  # another login is another family
    again = customers.post(
        "/auth/refresh", json={"refresh_token": rotated.get_json()["refresh_token"]}
    )
    assert again.status_code == 401  # the whole family is gone


def test_password_change(customers: FlaskClient, identity: Identity) -> None:
    profile = identity.register()
    tokens = identity.login(profile["username"], profile["password"])
    path = f"/customers/{profile['username']}/password"
    headers = bearer(tokens["access_token"])
    wrong = customers.post(
        path,
        json={"current_password": "not-it", "new_password": "brand-new-password"},
        headers=headers,
    )
    assert wrong.status_code == 401
    changed = customers.post(
        path,
        json={"current_password": profile["password"], "new_password": "brand-new-password"},
        headers=headers,
    )
    assert changed.status_code == 204
    assert _login(customers, profile["username"], profile["password"]).status_code == 401
    assert _login(customers, profile["username"], "brand-new-password").status_code == 200
    refresh = customers.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401


def test_admin_sees_and_reverses_a_deactivation(customers: FlaskClient, identity: Identity) -> None:
    profile, token = identity.new_customer()
    admin = bearer(identity.token("admin", ADMIN_PASSWORD))
    name = profile["username"]
    assert customers.delete(f"/customers/{name}", headers=bearer(token)).status_code == 204
    seen = customers.get(f"/customers/{name}", headers=admin).get_json()
    assert seen["is_active"] is False and seen["deactivated_at"] is not None
    assert _login(customers, name, profile["password"]).status_code == 401
    back = customers.post(f"/customers/{name}/reactivation", headers=admin)
    assert back.status_code == 200 and back.get_json()["is_active"] is True
    assert _login(customers, name, profile["password"]).status_code == 200
