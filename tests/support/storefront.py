"""The storefront's tests' helpers: the services faked at their HTTP boundary, logging in."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from flask.testing import FlaskClient

from shopkit.service_client import DependencyUnavailable, ServiceResponse
from storefront.clients import BinaryResponse
from storefront.cookie import FernetSerializer

Handler = Callable[["Call"], ServiceResponse]


@dataclass
class Call:
    """One call the storefront made."""

    service: str
    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    token: str | None = None
    idempotency_key: str | None = None
    body: bytes | None = None
    headers: dict[str, str] | None = None
    #: Made as a quick call (one attempt, a short timeout).
    quick: bool = False


@dataclass
class FakeServices:
    """Answers calls from ``routes`` (``(service, method, path)`` → response or handler)."""

    routes: dict[tuple[str, str, str], ServiceResponse | Handler] = field(default_factory=dict)
    texts: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)
    binaries: dict[tuple[str, str, str], Any] = field(default_factory=dict)

    def on(self, service: str, method: str, path: str, status: int = 200, body: Any = None) -> None:
        """Answer ``method path`` of ``service`` with ``status`` and ``body``."""
        self.routes[(service, method, path)] = ServiceResponse(status, body or {})

    def handle(self, service: str, method: str, path: str, handler: Handler) -> None:
        """Answer ``method path`` of ``service`` by calling ``handler``."""
        self.routes[(service, method, path)] = handler

    def call(self, service: str, method: str, path: str, **kwargs: Any) -> ServiceResponse:
        """The transport's call: record it, then answer (or raise if the service is down)."""
        call = Call(service, method, path, **kwargs)
        self.calls.append(call)
        if service in self.down:
            raise DependencyUnavailable(service)
        answer = self.routes.get((service, method, path))
        if answer is None:
            return ServiceResponse(
                404, {"code": "not_found", "detail": f"fake: no {method} {path}"}
            )
        return answer(call) if callable(answer) else answer

    def text(self, service: str, path: str) -> tuple[int, str]:
        """The transport's text GET."""
        if service in self.down:
            raise DependencyUnavailable(service)
        return self.texts.get((service, path), (404, ""))

    def made(self, service: str, method: str, path: str) -> list[Call]:
        """The calls made to ``method path`` of ``service``."""
        return [c for c in self.calls if (c.service, c.method, c.path) == (service, method, path)]

    def binary(self, service: str, method: str, path: str, **kwargs: Any) -> BinaryResponse:
        """The transport's bytes call (images): recorded like the others, answered from
        ``binaries`` (a response, or a handler given the :class:`Call`)."""
        call = Call(service, method, path, token=kwargs.get("token"), body=kwargs.get("body"),
                    headers=dict(kwargs.get("headers") or {}))  # fmt: skip
        self.calls.append(call)
        if service in self.down:
            raise DependencyUnavailable(service)
        answer = self.binaries.get((service, method, path))
        if answer is None:
            return BinaryResponse(404, {"Content-Type": "application/problem+json"},
                                  b'{"code": "not_found", "detail": "fake: no image"}')  # fmt: skip
        return answer(call) if callable(answer) else answer


def access_token(username: str, role: str = "customer", ttl_s: int = 900,
                 customer_id: int | None = None) -> str:  # fmt: skip
    """A token shaped like the customers service's (the storefront reads its claims only);
    ``customer_id`` becomes its ``cid`` claim."""
    claims: dict[str, Any] = {"sub": username, "role": role, "exp": int(time.time()) + ttl_s}
    if customer_id is not None:
        claims["cid"] = customer_id
    return jwt.encode(claims, "a-key-the-storefront-never-verifies-with-32b", algorithm="HS256")


def log_in(client: FlaskClient, fake: FakeServices, username: str, role: str = "customer",
           ttl_s: int = 900, customer_id: int | None = None) -> str:  # fmt: skip
    """Log ``client`` in through the login form; returns the access token the fake issued."""
    token = access_token(username, role, ttl_s, customer_id)
    fake.on("customers", "POST", "/auth/login", 200,
            {"access_token": token, "refresh_token": "refresh-1", "expires_in": ttl_s})  # fmt: skip
    response = client.post("/login", data={"username": username, "password": "secret-pass"})
    assert response.status_code == 302, response.text
    return token


def session_cookie(secret: str, username: str, customer_id: int, role: str = "customer",
                   ttl_s: int = 3600) -> str:  # fmt: skip
    """The value of a storefront session cookie for a logged-in user, as the storefront's own
    login would write it (encrypted with ``secret``; its token shaped like the customers
    service's, with the ``cid`` claim). For talking to a running storefront without a
    customers service: it renews a token only when it is about to expire."""
    expires = time.time() + ttl_s
    claims = {"sub": username, "role": role, "cid": customer_id, "exp": int(expires)}
    access = jwt.encode(claims, "a-key-the-storefront-never-verifies-with-32b", algorithm="HS256")
    session = {
        "sid": f"sid-{username}-{customer_id}",
        "user": {"username": username, "role": role, "cid": customer_id},
        "tokens": {"access": access, "refresh": "refresh-1", "expires_at": expires},
        "_permanent": True,
    }
    return FernetSerializer(secret).dumps(session)
