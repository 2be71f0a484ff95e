"""The JWKS key resolver of the services that verify tokens they did not issue."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shopkit.auth import JwksKeyResolver
from shopkit.errors import ProblemError, Unauthorized
from tests.support.database import free_port


class Jwks:
    """What the fake customers service publishes, and how often it was asked."""

    def __init__(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
        self.body = {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}
        self.status = 200
        self.fetches = 0


@pytest.fixture
def jwks() -> Iterator[tuple[str, Jwks]]:
    published = Jwks()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            published.fetches += 1
            data = json.dumps(published.body).encode()
            self.send_response(published.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json", published
    server.shutdown()
    server.server_close()


def test_keys_are_fetched_once_and_an_unknown_kid_refetches_at_most_so_often(
    jwks: tuple[str, Jwks],
) -> None:
    url, published = jwks
    resolver = JwksKeyResolver(url, min_refetch_s=60)
    assert resolver.public_key("k1") is resolver.public_key("k1")
    assert published.fetches == 1
    for _ in range(3):
        with pytest.raises(Unauthorized):
            resolver.public_key("k2")
    assert published.fetches == 1  # the last fetch was too recent to ask again


def test_while_keys_cannot_be_fetched_checks_fail_fast_with_503(jwks: tuple[str, Jwks]) -> None:
    url, published = jwks
    published.status = 503
    resolver = JwksKeyResolver(url, min_refetch_s=60)
    for _ in range(3):
        with pytest.raises(ProblemError) as raised:
            resolver.public_key("k1")
        assert (raised.value.status, raised.value.code) == (503, "auth_unavailable")
    assert published.fetches == 1  # one attempt, not one per request
