"""Property-based run over the customers service's own OpenAPI document: no input gives a 5xx."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME
from tests.support.fuzz import fuzz_operations


def test_no_input_causes_a_server_error(customers_app: Flask) -> None:
    token = (
        customers_app.test_client()
        .post("/auth/login", json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD})
        .get_json()["access_token"]
    )
    checked: dict[str, Any] = fuzz_operations(customers_app, {"Authorization": f"Bearer {token}"})
    assert "POST /internal/wallet-debits" in checked
    assert len(checked) >= 15
