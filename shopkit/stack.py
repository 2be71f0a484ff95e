"""Start Shop services as real gunicorn processes (used by ``make run``, tests and benchmarks).

A :class:`ServiceProcess` runs one service under gunicorn with the shared
settings in :mod:`shopkit.gunicorn_conf`, waits until ``/readyz`` answers and
stops the whole process group on :meth:`ServiceProcess.stop`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests

from shopkit.config import PROJECT_ROOT

PACKAGES = {
    "customers": "customers_service",
    "inventory": "inventory_service",
    "sales": "sales_service",
    "reviews": "reviews_service",
}


def free_port() -> int:
    """An unused TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def migrate(service: str, env: Mapping[str, str]) -> None:
    """Run ``flask --app <package> db upgrade`` for ``service`` with ``env``."""
    subprocess.run(  # noqa: S603
        [_bin("flask"), "--app", PACKAGES[service], "db", "upgrade"],
        env={**os.environ, **env},
        check=True,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
    )


@dataclass
class ServiceProcess:
    """One service running under gunicorn on ``port``."""

    service: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 2
    threads: int = 4
    log: IO[bytes] | int | None = subprocess.DEVNULL
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the running service."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The gunicorn command line that serves this service."""
        return [
            _bin("gunicorn"),
            "-c",
            "python:shopkit.gunicorn_conf",
            "-b",
            f"127.0.0.1:{self.port}",
            f"{PACKAGES[self.service]}:create_app()",
        ]

    def start(self) -> ServiceProcess:
        """Start gunicorn in its own process group."""
        env = {
            **os.environ,
            "WEB_CONCURRENCY": str(self.workers),
            "GUNICORN_THREADS": str(self.threads),
            **self.env,
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each gunicorn master makes its own
        self.process = subprocess.Popen(  # noqa: S603
            self.command(),
            env=env,
            cwd=PROJECT_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> ServiceProcess:
        """Block until ``/readyz`` answers 200 (raise if the process dies or time runs out)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.service} exited with {self.process.returncode}")
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.service} not ready on {self.url} after {timeout_s}s")

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash, for fault-injection tests)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0, *, graceful: bool = True) -> None:
        """Stop gunicorn: SIGTERM (graceful) or SIGQUIT (quick); SIGKILL the group if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM if graceful else signal.SIGQUIT)
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        except ProcessLookupError:
            pass


def present_services() -> list[str]:
    """The services whose packages exist in this checkout, in start order."""
    import importlib.util  # noqa: PLC0415

    found = []
    for name, package in PACKAGES.items():
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin and (Path(spec.origin).parent / "migrations").is_dir():
            found.append(name)
    return found


def _pump(prefix: str, stream: IO[bytes]) -> None:
    """Copy a child's output to ours, each line prefixed with its service name."""
    for raw in iter(stream.readline, b""):
        sys.stdout.write(f"{prefix} | {raw.decode(errors='replace')}")
        sys.stdout.flush()


def run_local(services: list[str] | None = None) -> int:
    """``make run``: database, migrations, every service under gunicorn; Ctrl-C stops all.

    Uses ``DATABASE_URL`` if set, else the embedded PostgreSQL under ``.data/``
    (stopped again on exit). Ports come from ``CUSTOMERS_URL``... defaults
    5000-5003. Returns the exit status.
    """
    import threading  # noqa: PLC0415

    from shopkit import embedded_pg  # noqa: PLC0415
    from shopkit.config import SERVICE_PORTS, Settings  # noqa: PLC0415
    from shopkit.db import normalise_url  # noqa: PLC0415

    services = services or present_services()
    settings = Settings.from_env("launcher")
    server = None
    if settings.database_url:
        url = normalise_url(settings.database_url)
    else:
        server, url = embedded_pg.start(Path(settings.data_dir) / "pg", cleanup_mode="stop")
    env = {"DATABASE_URL": url}
    processes: list[ServiceProcess] = []
    stopping = threading.Event()

    def _stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        for service in services:
            print(f"launcher | migrating {service}", flush=True)
            migrate(service, env)
        for service in services:
            port = int(getattr(settings, f"{service}_url").rsplit(":", 1)[1].split("/")[0])
            process = ServiceProcess(service, port or SERVICE_PORTS[service], env=env)
            process.log = subprocess.PIPE
            process.start()
            assert process.process is not None and process.process.stdout is not None
            threading.Thread(
                target=_pump, args=(f"{service:<9}", process.process.stdout), daemon=True
            ).start()
            processes.append(process)
        for process in processes:
            process.wait_ready(60)
        for process in processes:
            print(
                f"launcher | {process.service:<9} ready at {process.url}"
                f"  (docs: {process.url}/docs)",
                flush=True,
            )
        print("launcher | press Ctrl-C to stop", flush=True)
        while not stopping.wait(0.5):
            for process in processes:
                if process.process is not None and process.process.poll() is not None:
                    print(f"launcher | {process.service} exited; stopping", flush=True)
                    stopping.set()
        return 0
    finally:
        print("launcher | stopping services", flush=True)
        for process in processes:
            process.stop(timeout_s=8)
        if server is not None:
            server.cleanup()  # type: ignore[attr-defined]
        print("launcher | stopped", flush=True)


def main() -> None:
    """Console entry point of ``shop-run`` (what ``make run`` calls)."""
    sys.exit(run_local())
