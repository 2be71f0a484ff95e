"""Deploy tests: the real nginx gateway, rendered Kubernetes manifests, one database per service."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.gateway import Gateway
from devstack.processes import free_port
from shopkit.registry import SERVICE_NAMES


class GatewayUnderTest(Gateway):
    """A :class:`~devstack.gateway.Gateway` whose access log (JSON lines) the test can read."""

    def __init__(self, upstreams: dict[str, str]) -> None:
        self.log_path = Path(tempfile.mkstemp(prefix="shop-gateway-", suffix=".log")[1])
        super().__init__(free_port(), upstreams, log=self.log_path.open("ab"))

    def access(self, request_id: str, timeout_s: float = 5.0) -> dict[str, Any]:
        """The access-log entry of the request with ``request_id`` (waits for it briefly)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for line in self.log_path.read_text(errors="replace").splitlines():
                if line.startswith("{") and f'"request_id":"{request_id}"' in line:
                    return json.loads(line)  # type: ignore[no-any-return]
            assert time.monotonic() < deadline, f"no access-log line for {request_id}"
            time.sleep(0.05)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop nginx and drop its log."""
        super().stop(timeout_s)
        self.log_path.unlink(missing_ok=True)


def login(session: requests.Session, base: str, username: str, password: str) -> dict[str, str]:
    """Log in through ``base`` (the gateway); the Authorization header of the access token."""
    reply = session.post(base + "/auth/login", json={"username": username, "password": password})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def funded_shopper(
    session: requests.Session, base: str, username: str, amount: str
) -> dict[str, str]:
    """Register ``username`` through ``base``, log in, top the wallet up; the auth header."""
    from tests.conftest import customer_payload

    body = customer_payload(username)
    assert session.post(base + "/customers", json=body).status_code == 201
    headers = login(session, base, username, body["password"])
    charged = session.post(
        base + f"/customers/{username}/wallet/charge", headers=headers, json={"amount": amount}
    )
    assert charged.json()["balance"] == amount, charged.text
    return headers


@pytest.fixture(scope="session")
def services(live_stack: Any) -> Any:
    """The four services as real gunicorn processes."""
    for service in SERVICE_NAMES:
        live_stack.start(service)
    return live_stack


@pytest.fixture(scope="session")
def storefront(services: Any) -> Any:
    """The storefront as a real gunicorn process (one worker, like everywhere) on the services."""
    secret = {"STOREFRONT_SECRET_KEY": "deploy-test-secret"}
    return services.start("storefront", workers=1, extra_env=secret)


@pytest.fixture(scope="session")
def gateway(services: Any, storefront: Any) -> Iterator[GatewayUnderTest]:
    """The repository's nginx configuration in front of the four live services and the storefront."""
    upstreams = {name: f"127.0.0.1:{port}" for name, port in services.ports.items()}
    gateway = GatewayUnderTest(upstreams).start()
    try:
        gateway.wait_ready()
        yield gateway
    finally:
        gateway.stop()


class Echo(BaseHTTPRequestHandler):
    """An upstream that answers every request with the headers it received."""

    seen: list[dict[str, str]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        Echo.seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _answer

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def echo_gateway() -> Iterator[GatewayUnderTest]:
    """The gateway in front of a header-echoing upstream.

    Customers' upstream is a closed port; the storefront's is not given at all (the
    gateway then points it at a closed port too).
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    echo = f"127.0.0.1:{server.server_address[1]}"
    gateway = GatewayUnderTest(
        {"customers": f"127.0.0.1:{free_port()}", "inventory": echo, "sales": echo, "reviews": echo}
    ).start()
    try:
        gateway.wait_ready()
        Echo.seen.clear()
        yield gateway
    finally:
        gateway.stop()
        server.shutdown()
