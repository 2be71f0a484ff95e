"""The gateway: the repository's nginx configuration, run by the real nginx, in front of the
four services running as real gunicorn processes.

Every operation of every service's OpenAPI document is sent through the gateway and the
gateway's own access log says which upstream served it: it must be the service whose
document has the path, and no ``/internal/*`` path (nor ``/metrics``) may reach anyone.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from shopkit.app import MAX_BODY_BYTES
from shopkit.registry import SERVICE_NAMES
from tests.support.database import GATEWAY_DIR
from tests.support.gateway import Echo, GatewayUnderTest, assert_problem, funded_shopper, login
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME
from tests.support.reviews import once_purchase_known

pytestmark = pytest.mark.processes

METHODS = ("get", "put", "post", "patch", "delete")
#: Paths the gateway never routes: service-to-service calls, every service's own fault
#: switches (one process's, for operators and the fault tests, reached on the service) and
#: its events (the same path in several services).
NEVER_PUBLIC = ("/internal/", "/admin/faults", "/admin/events")


def documents(stack: Any) -> dict[str, dict[str, Any]]:
    """Each running service's own ``/openapi.json``."""
    return {
        name: requests.get(stack.url(name) + "/openapi.json", timeout=10).json()
        for name in SERVICE_NAMES
    }


def sample_path(template: str, parameters: list[dict[str, Any]]) -> str:
    """``/products/{product_id}/reviews`` → ``/products/1/reviews`` (a value of each type)."""
    kinds = {p["name"]: p.get("schema", {}) for p in parameters if p.get("in") == "path"}

    def value(match: re.Match[str]) -> str:
        schema = kinds.get(match.group(1), {})
        if schema.get("type") == "integer":
            return "1"
        if schema.get("format") == "uuid":
            return str(uuid.uuid4())
        return "gw_user"

    return re.sub(r"\{([^}]+)\}", value, template)


def operations(docs: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str, str, str]]:
    """``(owner, method, template, concrete path)`` of every documented operation.

    The routes every service has (health, metrics, its own API document and
    Swagger UI) have no single owner behind the gateway and are left out.
    """
    every_service = set.intersection(*(set(doc["paths"]) for doc in docs.values()))
    for owner, doc in docs.items():
        for template, item in doc["paths"].items():
            if template in every_service:
                continue
            for method in METHODS:
                if method in item:
                    parameters = [*item.get("parameters", []), *item[method].get("parameters", [])]
                    yield owner, method, template, sample_path(template, parameters)


def test_every_documented_operation_reaches_its_owner(
    services: Any, gateway: GatewayUnderTest
) -> None:
    docs = documents(services)
    by_port = {f"127.0.0.1:{port}": name for name, port in services.ports.items()}
    public = internal = 0
    for owner, method, template, path in operations(docs):
        request_id = f"route-{uuid.uuid4().hex}"
        response = requests.request(
            method, gateway.url + path, headers={"X-Request-ID": request_id}, timeout=10
        )
        entry = gateway.access(request_id)
        if template.startswith(NEVER_PUBLIC):
            internal += 1
            assert entry["upstream"] == "", f"{method} {path} reached {entry['upstream']}"
            assert_problem(response, 404, "not_found")
        else:
            public += 1
            served_by = by_port.get(entry["upstream"])
            assert served_by == owner, f"{method.upper()} {template} → {served_by}, owner {owner}"
            assert response.status_code != 502, response.text
        assert response.headers["X-Request-ID"] == request_id
    assert public >= 30 and internal >= 4  # every service's document was walked


@pytest.mark.parametrize(
    "path",
    [
        "/metrics",
        "/metrics/",
        "/admin/faults",
        "/admin/events",
        "/admin/events/dead-letters",
        "/internal",
        "/internal/",
        "//internal/reservations",
        "/internal/../internal/wallet-debits",
        "/products/1/../../internal/reservations",
        "/products/1/%2e%2e/%2e%2e/internal/reservations",
        "/products/1%2F..%2F..%2Finternal%2Freservations",
        "/%69nternal/reservations",
        "/shop/metrics",
        "/shop/../internal/reservations",
        "/shopping",
        "/openapi.json",
        "/no/such/route",
    ],
)
def test_internal_and_unknown_paths_are_a_404_problem_that_reaches_no_service(
    gateway: GatewayUnderTest, path: str
) -> None:
    for method in ("GET", "POST"):
        request_id = f"deny-{uuid.uuid4().hex}"
        response = requests.request(
            method, gateway.url + path, headers={"X-Request-ID": request_id}, timeout=10
        )
        body = assert_problem(response, 404, "not_found")
        assert body["request_id"] == request_id
        assert gateway.access(request_id)["upstream"] == ""


def test_a_purchase_journey_through_the_gateway(services: Any, gateway: GatewayUnderTest) -> None:
    api = requests.Session()
    base = gateway.url

    admin = login(api, base, ADMIN_USERNAME, ADMIN_PASSWORD)
    product = api.post(
        base + "/products",
        headers=admin,
        json={
            "name": "Gateway Mug",
            "category": "accessories",
            "price": "12.50",
            "description": "Blue.",
            "stock": 3,
        },
    )
    assert product.status_code == 201, product.text
    product_id = product.json()["id"]
    jo = funded_shopper(api, base, "gw_jo", "30.00")

    sale = api.post(base + "/sales", headers=jo, json={"product_id": product_id, "quantity": 2})
    assert sale.status_code == 201, sale.text
    assert sale.json()["total"] == "25.00"
    # The shared prefixes, answered by their owners with real data.
    assert api.get(base + "/customers/gw_jo", headers=jo).json()["username"] == "gw_jo"
    history = api.get(base + "/customers/gw_jo/sales", headers=jo).json()
    assert [s["id"] for s in history["items"]] == [sale.json()["id"]]
    assert api.get(base + f"/products/{product_id}").json()["stock"] == 1
    review = once_purchase_known(  # reviews learns the purchase from its order events
        lambda: api.post(
            base + "/reviews",
            headers=jo,
            json={"product_id": product_id, "rating": 5, "comment": "Holds tea."},
        )
    )
    assert review.status_code == 201, review.text
    mine = api.get(base + "/customers/gw_jo/reviews", headers=jo).json()
    assert [r["id"] for r in mine["items"]] == [review.json()["id"]]
    summary = api.get(base + f"/products/{product_id}/reviews").json()["summary"]
    assert summary["count"] == 0  # pending moderation: the reviews service's own rule
    assert api.get(base + "/customers/gw_jo/wallet", headers=jo).json()["balance"] == "5.00"


def test_bodies_over_the_limit_are_refused_before_any_service(gateway: GatewayUnderTest) -> None:
    assert (
        GATEWAY_DIR.joinpath("http.conf")
        .read_text()
        .count(f"client_max_body_size {MAX_BODY_BYTES // (1024 * 1024)}m;")
        == 1
    )  # the services' own limit
    request_id = f"big-{uuid.uuid4().hex}"
    response = requests.post(
        gateway.url + "/customers",
        data=b"x" * (MAX_BODY_BYTES + 1),
        headers={"Content-Type": "application/json", "X-Request-ID": request_id},
        timeout=30,
    )
    assert_problem(response, 413, "payload_too_large")
    assert gateway.access(request_id)["upstream"] == ""
    # Just under the limit, the body reaches customers (which refuses it as JSON).
    request_id = f"fits-{uuid.uuid4().hex}"
    response = requests.post(
        gateway.url + "/customers",
        data=b"x" * (MAX_BODY_BYTES - 1024),
        headers={"Content-Type": "application/json", "X-Request-ID": request_id},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert gateway.access(request_id)["upstream"] != ""


def test_auth_is_rate_limited_per_client_with_a_problem_and_retry_after(services: Any) -> None:
    upstreams = {name: f"127.0.0.1:{services.ports[name]}" for name in SERVICE_NAMES}
    gateway = GatewayUnderTest(upstreams).start()
    try:
        gateway.wait_ready()
        session = requests.Session()
        answers = [
            session.post(gateway.url + "/auth/refresh", json={"refresh_token": "nope"}, timeout=10)
            for _ in range(30)
        ]
        statuses = [a.status_code for a in answers]
        assert statuses[:10] == [401] * 10, statuses  # the burst reaches customers
        limited = [a for a in answers if a.status_code == 429]
        assert len(limited) >= 10, statuses
        assert_problem(limited[0], 429, "too_many_requests")
        assert limited[0].headers["Retry-After"] == "1"
        # The storefront's log-in page calls /auth/login for the visitor: the same limit
        # (its upstream is a closed port here, so what passes is a 502).
        shop = [session.post(gateway.url + "/shop/login", timeout=10) for _ in range(15)]
        assert {a.status_code for a in shop} <= {429, 502}, [a.status_code for a in shop]
        assert sum(a.status_code == 429 for a in shop) >= 10
        # Other paths are not limited.
        assert all(
            session.get(gateway.url + "/products", timeout=10).status_code == 200 for _ in range(20)
        )
    finally:
        gateway.stop()


def test_forwarded_headers(echo_gateway: GatewayUnderTest) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    sent = requests.get(
        echo_gateway.url + "/products",
        headers={
            "X-Request-ID": "client-chosen-id",
            "traceparent": traceparent,
            "tracestate": "shop=1",
            "X-Forwarded-For": "203.0.113.9",  # a client's claim: replaced, not trusted
            "X-Forwarded-Prefix": "/evil",  # the storefront's prefix: the gateway's only
            "X-Request-Start": "t=1",  # a client's claim of when it started: replaced
        },
        timeout=10,
    )
    assert sent.status_code == 200
    upstream = Echo.seen[-1]
    started = float(upstream["x-request-start"].removeprefix("t="))
    assert abs(started - time.time()) < 5  # the gateway's own clock, not the client's claim
    assert upstream["x-request-id"] == "client-chosen-id"
    assert sent.headers["X-Request-ID"] == "client-chosen-id"
    assert upstream["traceparent"] == traceparent
    assert upstream["tracestate"] == "shop=1"
    assert upstream["x-forwarded-for"] == "127.0.0.1"
    assert upstream["x-forwarded-proto"] == "http"
    assert "x-forwarded-prefix" not in upstream
    assert upstream["host"] == "127.0.0.1"  # the name the client asked for, without the port

    # No id, or one the services would not accept: the gateway makes one, sends it on and back.
    for headers in ({}, {"X-Request-ID": "bad id with spaces"}):
        reply = requests.get(echo_gateway.url + "/reviews", headers=headers, timeout=10)
        made = Echo.seen[-1]["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made)
        assert reply.headers["X-Request-ID"] == made  # once: requests joins repeats with ","


def test_a_service_that_does_not_answer_is_a_502_problem(echo_gateway: GatewayUnderTest) -> None:
    assert_problem(
        requests.get(echo_gateway.url + "/customers/anyone", timeout=10), 502, "bad_gateway"
    )
