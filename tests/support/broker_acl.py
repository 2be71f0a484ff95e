"""The storefront's broker user, checked on a real valkey-server.

:func:`assert_storefront_only_reads_orders` is what every place Shop runs must give the
storefront (the dev stack, Compose, Kubernetes); :func:`valkey_with` runs the embedded
``valkey-server`` binary with the very arguments a deployment file gives it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from devstack.broker import HOST, server_binary
from devstack.processes import preexec
from shopkit.events.catalog import stream_for
from tests.support.ports import free_port

ORDERS = stream_for("order")
CUSTOMERS = stream_for("customer")


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


def assert_storefront_only_reads_orders(storefront_url: str, services_url: str) -> None:
    """The storefront's URL reads ``events:order`` (as the live hub does, ``XREAD``) and is
    refused everything else; the services' URL still writes, reads and manages groups."""
    services = _client(services_url)
    storefront = _client(storefront_url)
    try:
        order_id = services.xadd(ORDERS, {"event": "placed"})
        services.xadd(CUSTOMERS, {"event": "registered", "email": "ann@example.com"})
        services.xgroup_create(CUSTOMERS, "acl-check", id="0", mkstream=True)
        assert services.xreadgroup("acl-check", "c1", {CUSTOMERS: ">"}, count=1)
        assert services.xrange(ORDERS)

        replies: Any = storefront.xread({ORDERS: "0-0"}, count=100, block=100)
        assert [entry for _stream, entries in replies for entry, _ in entries][-1] == order_id
        refused: list[tuple[str, Callable[[], object]]] = [
            ("XRANGE events:customer", lambda: storefront.xrange(CUSTOMERS)),
            ("XREAD events:customer", lambda: storefront.xread({CUSTOMERS: "0-0"}, count=1)),
            ("XADD events:order", lambda: storefront.xadd(ORDERS, {"event": "forged"})),
            ("DEL events:order", lambda: storefront.delete(ORDERS)),
            ("FLUSHALL", storefront.flushall),
            ("XGROUP CREATE", lambda: storefront.xgroup_create(ORDERS, "g", mkstream=True)),
            ("PUBLISH", lambda: storefront.publish("anything", "x")),
            ("ACL SETUSER", lambda: storefront.acl_setuser("storefront", commands=["+@all"])),
        ]
        for what, call in refused:
            with pytest.raises(redis.exceptions.NoPermissionError):
                call()
                pytest.fail(f"the storefront's user may {what}")
        # Nothing was changed by the refused calls; the services still see it all.
        assert services.xlen(ORDERS) == 1 and services.xlen(CUSTOMERS) == 1
        assert services.xrange(ORDERS)[-1][0] == order_id
    finally:
        storefront.close()
        services.close()


def assert_check_needs_the_password(shell_command: str, port: int, password: str) -> None:
    """A deployment's health check (``sh -c`` of ``valkey-cli ping ...``), run with this
    machine's ``valkey-cli`` on ``port``, passes with ``password`` in ``REDISCLI_AUTH``
    (where the file puts it) and fails with a wrong one."""
    cli = str(Path(server_binary()).with_name("valkey-cli"))
    assert "valkey-cli" in shell_command
    check = shell_command.replace("valkey-cli", f"{cli} -p {port}")
    for auth, healthy in ((password, True), ("wrong-password", False)):
        done = subprocess.run(
            ["sh", "-c", check], env={"PATH": "/usr/bin:/bin", "REDISCLI_AUTH": auth},
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        assert (done.returncode == 0) is healthy, done


@contextmanager
def valkey_with(arguments: Sequence[str], data_dir: Path, password: str) -> Iterator[int]:
    """The embedded ``valkey-server`` started with ``arguments`` (a deployment file's, after
    its program name), on a free local port with its data in ``data_dir``; yields the port
    once the ``default`` user with ``password`` gets an answer to ``PING``."""
    port = free_port()
    local = ["--port", str(port), "--bind", HOST, "--dir", str(data_dir)]
    log = data_dir / "valkey.log"
    process = subprocess.Popen(
        [server_binary(), *arguments, *local, "--logfile", str(log)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=preexec(),  # noqa: PLW1509 (dies with the test run)
    )
    try:
        client = redis.Redis(host=HOST, port=port, password=password, socket_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else b""
            try:
                if client.ping():
                    break
            except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.05)
        client.close()
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
