"""The real client against a small real HTTP server standing in for inventory (and sales).

This proves :mod:`reviews_service.clients` speaks the contract: ``GET /products/{id}``,
anonymously, and anything unexpected becomes a 503. Writing a review asks nobody
but inventory: the server also plays sales, and is never asked about purchases.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from flask import Flask

from reviews_service.clients import build_clients
from shopkit.config import Settings
from shopkit.service_client import DependencyUnavailable
from tests.support.database import free_port
from tests.support.identity import SERVICE_SECRET, Identity, bearer
from tests.support.reviews import OrderEvents, assert_problem


@dataclass
class FakeServices:
    """State of the fake customers + inventory + sales server."""

    url: str = ""
    products: set[int] = field(default_factory=set)
    #: path prefix -> (status, body) to answer instead of the normal behaviour
    override: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    seen: list[dict[str, Any]] = field(default_factory=list)
    tokens_issued: list[str] = field(default_factory=list)

    def requests_to(self, prefix: str) -> list[dict[str, Any]]:
        """The requests received whose path starts with ``prefix``."""
        return [s for s in self.seen if s["path"].startswith(prefix)]

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        """``(status, json)`` for one request."""
        parts = urlsplit(target)
        self.seen.append(
            {
                "method": method,
                "path": parts.path,
                "query": parse_qs(parts.query),
                "headers": headers,
                "body": body,
            }
        )
        for prefix, canned in self.override.items():
            if parts.path.startswith(prefix):
                return canned
        if method == "POST" and parts.path == "/auth/service-token":
            credentials = json.loads(body)
            if credentials != {"client_id": "reviews", "client_secret": SERVICE_SECRET}:
                return 401, {"code": "invalid_client"}
            token = jwt.encode(
                {"sub": "reviews", "role": "service", "exp": int(time.time()) + 900},
                "fake-signing-key-of-at-least-32-bytes",
                algorithm="HS256",
            )
            self.tokens_issued.append(token)
            return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 900}
        if method == "GET" and parts.path.startswith("/products/"):
            product_id = int(parts.path.rsplit("/", 1)[1])
            if product_id not in self.products:
                return 404, {"status": 404, "code": "not_found", "detail": "No such product."}
            return 200, {
                "id": product_id,
                "name": "Espresso beans",
                "category": "food",
                "price": "12.50",
                "description": "Dark roast.",
                "stock": 3,
                "archived": False,
                "created_at": "2026-01-01T00:00:00+00:00",
                "updated_at": "2026-01-01T00:00:00+00:00",
            }
        return 404, {"code": "not_found"}


@pytest.fixture
def services() -> Iterator[FakeServices]:
    """A real HTTP server on a free port playing customers, inventory and sales."""
    state = FakeServices()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, payload = state.answer(self.command, self.path, dict(self.headers), body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _handle

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings_for(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings of reviews pointing every dependency at ``url``."""

    def make(url: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "customers_url": url,
            "inventory_url": url,
            "sales_url": url,
            "http_retries": 1,
            "http_connect_timeout_s": 1.0,
            "http_read_timeout_s": 2.0,
            **overrides,
        }
        return make_settings("reviews", **values)

    return make


def test_the_client_speaks_the_contract(
    services: FakeServices, settings_for: Callable[..., Settings]
) -> None:
    services.products = {7, 8}
    clients = build_clients(settings_for(services.url))
    assert clients.catalog.product_exists(7) is True
    assert clients.catalog.product_exists(9) is False

    products = services.requests_to("/products/")
    assert [(r["method"], r["path"]) for r in products] == [
        ("GET", "/products/7"),
        ("GET", "/products/9"),
    ]
    assert all("Authorization" not in r["headers"] for r in products)  # anonymous is enough
    assert services.requests_to("/auth/service-token") == []  # no token needed


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, {"code": "internal_error"}),
        (403, {"code": "forbidden"}),
        (200, {"unexpected": True}),
        (503, {}),
    ],
)
def test_unexpected_answers_become_dependency_unavailable(
    services: FakeServices,
    settings_for: Callable[..., Settings],
    status: int,
    body: dict[str, Any],
) -> None:
    services.products = {7}
    services.override["/products/"] = (status, body)
    clients = build_clients(settings_for(services.url))
    with pytest.raises(DependencyUnavailable) as raised:
        clients.catalog.product_exists(7)
    assert (raised.value.status, raised.value.code) == (503, "dependency_unavailable")


def test_an_unreachable_inventory_is_unavailable(settings_for: Callable[..., Settings]) -> None:
    clients = build_clients(settings_for(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(DependencyUnavailable):
        clients.catalog.product_exists(1)


def test_reviews_app_with_real_clients(
    services: FakeServices,
    settings_for: Callable[..., Settings],
    key_resolver: Any,
    identity: Identity,
    orders: OrderEvents,
    count_rows: Callable[[str], int],
) -> None:
    from reviews_service import create_app

    app: Flask = create_app(
        {"SETTINGS": settings_for(services.url), "KEY_RESOLVER": key_resolver, "TESTING": True}
    )
    client = app.test_client()
    buyer, token = identity.new_customer()
    services.products = {7, 8}
    orders.paid(buyer["id"], 7)
    body = {"product_id": 7, "rating": 5, "comment": "Bought it, love it."}

    services.override["/products/"] = (500, {"code": "internal_error"})
    down = client.post("/reviews", json=body, headers=bearer(token))
    assert assert_problem(down, 503, "dependency_unavailable")["dependency"] == "inventory"
    assert count_rows("reviews") == 0
    services.override.clear()

    assert_problem(
        client.post("/reviews", json={**body, "product_id": 9}, headers=bearer(token)),
        404,
        "not_found",
    )
    assert_problem(
        client.post("/reviews", json={**body, "product_id": 8}, headers=bearer(token)),
        403,
        "not_a_buyer",
    )
    created = client.post(
        "/reviews", json=body, headers={**bearer(token), "X-Request-ID": "review-req-1"}
    )
    assert created.status_code == 201
    assert created.get_json()["status"] == "pending"
    assert count_rows("reviews") == 1
    last = services.seen[-1]
    assert last["path"] == "/products/7"
    assert last["headers"]["X-Request-ID"] == "review-req-1"
    assert services.requests_to("/internal/purchases") == []  # sales: the purchase came by events
