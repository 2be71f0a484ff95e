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

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM gunicorn (graceful), then SIGKILL the group if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        except ProcessLookupError:
            pass
