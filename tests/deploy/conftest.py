"""Deploy tests: the real nginx gateway, rendered Kubernetes manifests, one database per service."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from shopkit.registry import SERVICE_NAMES
from tests.support.database import free_port
from tests.support.gateway import Echo, GatewayUnderTest


@pytest.fixture
def services(live_stack: Any) -> Any:
    """The four services as real gunicorn processes."""
    for service in SERVICE_NAMES:
        live_stack.start(service)
    return live_stack


@pytest.fixture
def storefront(services: Any) -> Any:
    """The storefront as a real gunicorn process (one worker, like everywhere) on the services."""
    secret = {"STOREFRONT_SECRET_KEY": "deploy-test-secret"}
    return services.start("storefront", workers=1, extra_env=secret)


@pytest.fixture
def gateway(services: Any, storefront: Any, nginx: GatewayUnderTest) -> GatewayUnderTest:
    """The repository's nginx configuration in front of the live services and the storefront."""
    return nginx


@pytest.fixture(scope="session")
def nginx(live_stack: Any) -> Iterator[GatewayUnderTest]:
    """The gateway's nginx for the session, pointed at the live stack's ports."""
    upstreams = {name: f"127.0.0.1:{port}" for name, port in live_stack.ports.items()}
    gateway = GatewayUnderTest(upstreams).start()
    try:
        gateway.wait_ready()
        yield gateway
    finally:
        gateway.stop()


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
