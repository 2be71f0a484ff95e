"""Real service processes for tests: gunicorn on free ports, against the test database."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from shopkit.registry import SERVICE_NAMES
from tests.support.database import APPS, ServiceProcess, free_port, service_role_url

#: The stacks whose services run relays and consumers (see :func:`stop_live_relays`).
_RELAYING: list[LiveStack] = []


@contextmanager
def relaying(stack: LiveStack) -> Iterator[None]:
    """While the block runs, ``stack`` (sharing the worker's test database, with a broker)
    is one whose services :func:`stop_live_relays` stops."""
    _RELAYING.append(stack)
    try:
        yield
    finally:
        _RELAYING.remove(stack)


def stop_live_relays(service: str) -> None:
    """Stop ``service`` in every stack running with a broker.

    Its relay holds the service's outbox lease (an advisory lock in the worker's
    shared test database) and publishes the outbox's rows to its own broker, so a
    test that relays that outbox in-process must be the only relay of it. Fixtures
    that need the service live start it again (:meth:`LiveStack.start` is idempotent).
    """
    for stack in _RELAYING:
        stack.stop(service)


class LiveStack:
    """Starts, kills and restarts services as gunicorn processes; URLs are fixed up front."""

    def __init__(
        self,
        database_url: str,
        admin: tuple[str, str],
        service_secret: str,
        *,
        events_url: str = "",
        storefront_events_url: str = "",
    ) -> None:
        self.database_url = database_url
        self.admin = admin
        self.service_secret = service_secret
        #: The broker every service gets as ``EVENTS_URL`` (none: no relays, no consumers).
        self.events_url = events_url
        #: The storefront's ``EVENTS_URL`` instead (its own broker user, as make run gives it:
        #: it may only read the order stream).
        self.storefront_events_url = storefront_events_url or events_url
        self.ports = {a.name: free_port() for a in APPS}  # the services and the storefront
        self.processes: dict[str, ServiceProcess] = {}
        self.log_dir = Path(tempfile.mkdtemp(prefix="shop-test-logs-"))

    def url(self, service: str) -> str:
        """Base URL of ``service`` (running or not)."""
        return f"http://127.0.0.1:{self.ports[service]}"

    def env(self, service: str | None = None) -> dict[str, str]:
        """The environment a service process gets (connecting as the service's own role)."""
        return {
            "DATABASE_URL": service_role_url(self.database_url, service)
            if service in SERVICE_NAMES  # the storefront has no database of its own
            else self.database_url,
            "DEACTIVATION_REFRESH": "2",
            "ADMIN_USERNAME": self.admin[0],
            "ADMIN_PASSWORD": self.admin[1],
            "SERVICE_CLIENT_SECRET": self.service_secret,
            "PASSWORD_HASH_TIME_COST": "1",
            "PASSWORD_HASH_MEMORY_KIB": "8192",
            "LOG_LEVEL": "WARNING",
            "HTTP_CONNECT_TIMEOUT": "1",
            "HTTP_READ_TIMEOUT": "3",
            **{f"{name.upper()}_URL": self.url(name) for name in SERVICE_NAMES},
            **({"EVENTS_URL": self.events_url} if self.events_url else {}),
            **(
                {"EVENTS_URL": self.storefront_events_url}
                if service == "storefront" and self.storefront_events_url
                else {}
            ),
        }

    def start(
        self,
        service: str,
        *,
        workers: int = 2,
        threads: int = 4,
        extra_env: dict[str, str] | None = None,
    ) -> ServiceProcess:
        """Start ``service`` unless it is running; wait until it is ready."""
        running = self.processes.get(service)
        if running is not None and running.process is not None and running.process.poll() is None:
            return running
        if running is not None:  # it died (killed by a test): its scratch directory goes too
            running.stop()
        log = (self.log_dir / f"{service}.log").open("ab")
        process = ServiceProcess(
            service,
            self.ports[service],
            env={**self.env(service), **(extra_env or {})},
            workers=workers,
            threads=threads,
            log=log,
        )
        self.processes[service] = process.start()
        try:
            process.wait_ready()
        except (RuntimeError, TimeoutError):
            process.stop()
            raise RuntimeError(self.logs(service)) from None
        return process

    def kill(self, service: str) -> None:
        """SIGKILL ``service`` (a crash)."""
        self.processes[service].kill()

    def logs(self, service: str) -> str:
        """The tail of ``service``'s log, for failure messages."""
        path = self.log_dir / f"{service}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self, service: str) -> None:
        """Stop ``service`` if this stack started it."""
        process = self.processes.pop(service, None)
        if process is not None:
            process.kill()

    def stop_all(self) -> None:
        """Stop every process this stack started."""
        for process in self.processes.values():
            process.kill()

    def close(self) -> None:
        """Stop every process and remove the logs: the stack is done with."""
        self.stop_all()
        shutil.rmtree(self.log_dir, ignore_errors=True)

    def token(self, username: str, password: str) -> str:
        """Log in through the running customers service."""
        response = requests.post(
            self.url("customers") + "/auth/login",
            json={"username": username, "password": password},
            timeout=10,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def service_token(self, client_id: str = "sales") -> str:
        """A service token from the running customers service."""
        response = requests.post(
            self.url("customers") + "/auth/service-token",
            json={"client_id": client_id, "client_secret": self.service_secret},
            timeout=10,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])
