"""Child processes of the dev stack: gunicorn apps on free ports, readiness, stopping.

A :class:`ServiceProcess` runs one app of :mod:`shopkit.registry` under
gunicorn with the shared settings in :mod:`shopkit.gunicorn_conf`, waits until
it is ready and stops its whole process group on :meth:`ServiceProcess.stop`.
Every child started here gets :func:`die_with_parent`: it is killed when the
process that started it dies, even by SIGKILL, so nothing is ever orphaned.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

from shopkit.config import PROJECT_ROOT
from shopkit.registry import app

#: ``prctl`` option: the signal a process gets when its parent thread dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1
# Loaded here, in the parent: the child, between fork and exec, only calls it.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux; elsewhere a no-op).

    Meant as a ``preexec_fn`` (see :func:`preexec`): it runs in the child between
    ``fork`` and ``exec`` and survives the ``exec``. If ``parent_pid`` died before
    it was set, the child (already adopted) kills itself rather than run orphaned.
    """
    if _PRCTL is None:
        return
    _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)


def preexec() -> Callable[[], None] | None:
    """The ``preexec_fn`` that ties a child to this process, or ``None`` off the main thread.

    The kernel's signal follows the *thread* that forked the child, so it is only
    asked for from the main thread: a child started from a short-lived thread would
    otherwise die with that thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    return functools.partial(die_with_parent, os.getpid())


def spawn(command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``Popen`` in a session of its own that the kernel kills if this process dies."""
    # preexec_fn with threads running: safe here, the child only calls a loaded libc function.
    return subprocess.Popen(  # noqa: S603 (our own commands)
        command,
        start_new_session=True,
        preexec_fn=preexec(),  # noqa: PLW1509
        **kwargs,
    )


def free_port() -> int:
    """An unused TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def venv_bin(name: str) -> str:
    """``name`` next to this interpreter (the virtualenv's), else as found on ``PATH``."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def migrate(service: str, env: Mapping[str, str]) -> None:
    """Run ``flask --app <package> db upgrade`` for ``service`` with ``env``."""
    subprocess.run(  # noqa: S603
        [venv_bin("flask"), "--app", app(service).package, "db", "upgrade"],
        env={**os.environ, **env},
        check=True,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        preexec_fn=preexec(),
    )


def scratch_env(directory: Path) -> dict[str, str]:
    """The variables that keep a gunicorn run's files in ``directory``: its workers' pooled
    metrics and its live faults (without them, each master makes temporary directories of
    its own, which outlive a master that is killed)."""
    (directory / "metrics").mkdir(parents=True, exist_ok=True)
    return {
        "PROMETHEUS_MULTIPROC_DIR": str(directory / "metrics"),
        "SHOP_FAULTS_DIR": str(directory / "faults"),
    }


@dataclass
class ServiceProcess:
    """One app of the registry running under gunicorn on ``port``."""

    service: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 2
    threads: int = 4
    log: IO[bytes] | int | None = subprocess.DEVNULL
    process: subprocess.Popen[bytes] | None = None
    #: This run's pooled metrics and live faults (unless ``env`` gives the faults' directory),
    #: removed once the process is gone: test suites start hundreds of services.
    scratch: Path | None = None

    @property
    def url(self) -> str:
        """Base URL of the running service."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The gunicorn command line that serves this service."""
        return [
            venv_bin("gunicorn"),
            "-c",
            "python:shopkit.gunicorn_conf",
            "-b",
            f"127.0.0.1:{self.port}",
            app(self.service).app_spec,
        ]

    def start(self) -> ServiceProcess:
        """Start gunicorn in its own process group, with a fresh scratch directory."""
        self._drop_scratch()
        self.scratch = Path(tempfile.mkdtemp(prefix=f"shop-{self.service}-"))
        env = {
            **os.environ,
            "WEB_CONCURRENCY": str(self.workers),
            "GUNICORN_THREADS": str(self.threads),
            **scratch_env(self.scratch),  # the faults are this run's own unless env gives them
            **self.env,
        }
        self.process = spawn(
            self.command(), env=env, cwd=PROJECT_ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> ServiceProcess:
        """Block until the app's ready path answers 200 (raise if it dies or time runs out)."""
        ready = self.url + app(self.service).ready_path
        wait_until_ok(ready, self.process, timeout_s, self.service)
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash, for fault-injection tests)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._drop_scratch()

    def stop(self, timeout_s: float = 10.0, *, graceful: bool = True) -> None:
        """Stop gunicorn: SIGTERM (graceful) or SIGQUIT (quick); SIGKILL the group if it lingers."""
        stop_group(self.process, signal.SIGTERM if graceful else signal.SIGQUIT, timeout_s)
        self._drop_scratch()

    def _drop_scratch(self) -> None:
        """Remove the scratch directory of a run that is over (or never was)."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


@dataclass
class WorkerProcess:
    """A service's background worker (``python -m <module>``), such as an event consumer."""

    name: str
    module: str
    env: dict[str, str] = field(default_factory=dict)
    log: IO[bytes] | int | None = subprocess.DEVNULL
    process: subprocess.Popen[bytes] | None = None
    #: Where it serves ``/metrics`` (``WORKER_METRICS_PORT``; 0: not known here).
    metrics_port: int = 0

    @property
    def pid(self) -> int:
        """The worker's process id (0 before it starts)."""
        return self.process.pid if self.process is not None else 0

    def start(self) -> WorkerProcess:
        """Start the worker in a session of its own, tied to this process."""
        self.process = spawn(
            [sys.executable, "-m", self.module],
            env={**os.environ, **self.env},
            cwd=PROJECT_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (it finishes its batch); SIGKILL if it lingers."""
        stop_group(self.process, signal.SIGTERM, timeout_s)


def wait_until_ok(
    url: str, process: subprocess.Popen[bytes] | None, timeout_s: float, name: str
) -> None:
    """Poll ``url`` until it answers 200; raise if ``process`` dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{name} not ready at {url} after {timeout_s}s")


def stop_group(process: subprocess.Popen[bytes] | None, sig: int, timeout_s: float) -> None:
    """Send ``sig`` to ``process``'s group and wait; SIGKILL the group if it lingers."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass
