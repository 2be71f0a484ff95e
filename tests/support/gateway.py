"""The deploy tests' helpers: the nginx gateway with a readable access log, shoppers, an echo."""

from __future__ import annotations

import json
import tempfile
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import requests

from tests.support.database import Gateway, free_port
from tests.support.identity import customer_payload


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
    body = customer_payload(username)
    assert session.post(base + "/customers", json=body).status_code == 201
    headers = login(session, base, username, body["password"])
    charged = session.post(
        base + f"/customers/{username}/wallet/charge", headers=headers, json={"amount": amount}
    )
    assert charged.json()["balance"] == amount, charged.text
    return headers


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


PROBLEM = "application/problem+json"
PROBLEM_MEMBERS = {"type", "title", "status", "detail", "code"}


def assert_problem(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    """The gateway's or a service's answer is the problem document of ``status`` and ``code``."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith(PROBLEM)
    body = response.json()
    assert set(body) >= PROBLEM_MEMBERS
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"].endswith("/" + code)
    return body
