"""Who calls the services in the tests: the bootstrap admin, customers, services, tokens."""

from __future__ import annotations

import uuid
from typing import Any

from flask.testing import FlaskClient

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "test-admin-password"
SERVICE_SECRET = "test-service-secret"


def customer_payload(username: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid registration body with a unique username and email."""
    name = username or f"user_{uuid.uuid4().hex[:8]}"
    return {
        "username": name,
        "password": "correct-horse-battery",
        "full_name": "Test Person",
        "email": f"{name}@example.com",
        "age": 30,
        "address": "1 Test Street, Testville",
        "gender": "female",
        "marital_status": "single",
        **overrides,
    }


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


class Identity:
    """Registers customers and obtains tokens through the customers API."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def register(self, username: str | None = None, **overrides: Any) -> dict[str, Any]:
        """Register a customer; return the profile plus its password."""
        payload = customer_payload(username, **overrides)
        response = self.client.post("/customers", json=payload)
        assert response.status_code == 201, response.get_json()
        return {**response.get_json(), "password": payload["password"]}

    def login(self, username: str, password: str) -> dict[str, Any]:
        """Log in; return the token response."""
        response = self.client.post(
            "/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()  # type: ignore[no-any-return]

    def token(self, username: str, password: str) -> str:
        """An access token for the account."""
        return str(self.login(username, password)["access_token"])

    def admin_token(self) -> str:
        """An access token of the bootstrap admin."""
        return self.token(ADMIN_USERNAME, ADMIN_PASSWORD)

    def service_token(self, client_id: str = "sales") -> str:
        """A ``service`` token for another Shop service."""
        response = self.client.post(
            "/auth/service-token", json={"client_id": client_id, "client_secret": SERVICE_SECRET}
        )
        assert response.status_code == 200, response.get_json()
        return str(response.get_json()["access_token"])

    def new_customer(self, **overrides: Any) -> tuple[dict[str, Any], str]:
        """Register a customer and return ``(profile, access_token)``."""
        profile = self.register(**overrides)
        return profile, self.token(profile["username"], profile["password"])
