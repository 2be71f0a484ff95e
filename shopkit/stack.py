"""Start Shop services as real gunicorn processes (used by ``make run``, tests and benchmarks).

A :class:`ServiceProcess` runs one service under gunicorn with the shared
settings in :mod:`shopkit.gunicorn_conf`, waits until ``/readyz`` answers and
stops the whole process group on :meth:`ServiceProcess.stop`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import requests

from shopkit.config import PROJECT_ROOT, Settings

if TYPE_CHECKING:
    from shopkit.gateway import Gateway

PACKAGES = {
    "customers": "customers_service",
    "inventory": "inventory_service",
    "sales": "sales_service",
    "reviews": "reviews_service",
}
#: Web front ends: no database or migrations; started once the services are ready.
FRONTENDS = {"storefront": "storefront"}
APPS = {**PACKAGES, **FRONTENDS}
STOREFRONT_PORT = 8080


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
            f"{APPS[self.service]}:create_app()",
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
        wait_until_ok(self.url + "/readyz", self.process, timeout_s, self.service)
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash, for fault-injection tests)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0, *, graceful: bool = True) -> None:
        """Stop gunicorn: SIGTERM (graceful) or SIGQUIT (quick); SIGKILL the group if it lingers."""
        stop_group(self.process, signal.SIGTERM if graceful else signal.SIGQUIT, timeout_s)


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


def present_services() -> list[str]:
    """The services whose packages exist in this checkout, in start order."""
    import importlib.util  # noqa: PLC0415

    found = []
    for name, package in PACKAGES.items():
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin and (Path(spec.origin).parent / "migrations").is_dir():
            found.append(name)
    return found


def present_frontends() -> list[str]:
    """The front ends whose packages exist in this checkout."""
    import importlib.util  # noqa: PLC0415

    return [name for name, package in FRONTENDS.items() if importlib.util.find_spec(package)]


def _pump(prefix: str, stream: IO[bytes]) -> None:
    """Copy a child's output to ours, each line prefixed with its service name."""
    for raw in iter(stream.readline, b""):
        sys.stdout.write(f"{prefix} | {raw.decode(errors='replace')}")
        sys.stdout.flush()


def _service_port(url: str) -> int:
    """The port of a service URL such as ``http://127.0.0.1:5000``."""
    return int(url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])


#: Where the default gunicorn layout (2 workers x 4 threads, a pool of 5) is not the fastest:
#: sales batches purchases, and one worker with many threads gathers larger batches for less
#: CPU per sale (bench/README.md, "The default layout"). Compose and Kubernetes set the same.
LAYOUTS: dict[str, dict[str, str]] = {
    "sales": {"WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "32", "DB_POOL_SIZE": "16"},
}


def _start_services(
    services: list[str], envs: dict[str, dict[str, str]], settings: Settings
) -> list[ServiceProcess]:
    """Start each service under gunicorn on its configured port, output prefixed with its name."""
    processes = []
    for service in services:
        # the storefront has no database: it only talks HTTP
        env = {**LAYOUTS.get(service, {}), **envs.get(service, {})}
        if service in FRONTENDS:  # one worker: the console's seeder runs live in the process
            port = int(os.environ.get("STOREFRONT_PORT") or STOREFRONT_PORT)
            process = ServiceProcess(service, port, env=env, workers=1, threads=8)
        else:
            port = _service_port(getattr(settings, f"{service}_url"))
            process = ServiceProcess(service, port, env=env)
        process.log = subprocess.PIPE
        process.start()
        assert process.process is not None and process.process.stdout is not None
        threading.Thread(
            target=_pump, args=(f"{service:<9}", process.process.stdout), daemon=True
        ).start()
        processes.append(process)
    return processes


#: Seconds the launcher gives every child to stop on its own before SIGKILL.
STOP_GRACE_S = 8.0


def _stop(
    seeder: subprocess.Popen[bytes] | None,
    processes: list[ServiceProcess],
    prometheus: ServiceProcess | None,
    gateway: Gateway | None,
) -> None:
    """Stop everything at once: signal every child first, then wait for them together.

    The seeder gets SIGINT (the replay prints its summary and exits), gunicorn
    SIGTERM (it drains its requests), nginx SIGQUIT, Prometheus SIGTERM; each
    process group still there after :data:`STOP_GRACE_S` is killed.
    """
    print("launcher | stopping", flush=True)
    deadline = time.monotonic() + STOP_GRACE_S
    signals: list[tuple[subprocess.Popen[bytes], int]] = []
    if seeder is not None:
        signals.append((seeder, signal.SIGINT))
    signals += [(p.process, signal.SIGTERM) for p in processes if p.process is not None]
    if prometheus is not None and prometheus.process is not None:
        signals.append((prometheus.process, signal.SIGTERM))
    if gateway is not None and gateway.process is not None:
        signals.append((gateway.process, signal.SIGQUIT))
    running = [(child, sig) for child, sig in signals if child.poll() is None]
    for child, sig in running:
        try:
            if sig == signal.SIGINT:
                child.send_signal(sig)
            else:
                os.killpg(child.pid, sig)
        except ProcessLookupError:
            pass
    for child, _sig in running:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=5)


#: Signals that mean "stop" when the process that started the launcher is handling one.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _blocked_signals(pid: int) -> int | None:
    """The signal mask of process ``pid`` (Linux ``/proc``), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("SigBlk:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        return None
    return None


def _process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as comm:
            return comm.read().strip()
    except OSError:
        return ""


class ParentWatch:
    """Notices when ``make``, which started the launcher, is being stopped by a signal.

    SIGINT sent to ``make`` alone (not to its process group, as a script or a
    supervisor may do) is not passed on: GNU make blocks it while it waits for
    its children to end, so ``make run`` would wait for ever with every service
    still up. The launcher watches its parent instead: once ``make`` blocks a
    stop signal it did not block at the start, or ``make`` is gone (the
    launcher was orphaned), the launcher stops everything, and make then
    exits. Any other parent (a shell, a test) is left alone.
    """

    def __init__(self) -> None:
        self.parent = os.getppid()
        name = _process_name(self.parent)
        self.watching = name in ("make", "gmake")
        self.blocked_at_start = _blocked_signals(self.parent) if self.watching else None

    def stopping(self) -> bool:
        """Whether make is handling a stop signal or has gone away."""
        if not self.watching:
            return False
        if os.getppid() != self.parent:
            return True
        blocked = _blocked_signals(self.parent)
        if blocked is None or self.blocked_at_start is None:
            return False
        newly = blocked & ~self.blocked_at_start
        return any(newly & (1 << (sig - 1)) for sig in _STOP_SIGNALS)


def run_local(services: list[str] | None = None) -> int:
    """``make run``: database, migrations, services under gunicorn, demo data; Ctrl-C stops all.

    Uses ``DATABASE_URL`` if set, else the embedded PostgreSQL under ``.data/``
    (stopped again on exit). Ports come from ``CUSTOMERS_URL`` ... ``REVIEWS_URL``
    (default 5000-5003); the storefront listens on ``STOREFRONT_PORT`` (8080).
    Returns the exit status.
    """
    from shopkit import embedded_pg  # noqa: PLC0415
    from shopkit.db import normalise_url  # noqa: PLC0415
    from shopkit.embedded_pg import service_role_url  # noqa: PLC0415

    services = services or present_services()
    settings = Settings.from_env("launcher")
    server = None
    if settings.database_url:
        url = normalise_url(settings.database_url)
    else:
        server, url = embedded_pg.start(Path(settings.data_dir) / "pg", cleanup_mode="stop")
        embedded_pg.ensure_service_roles(server, url)
    # Each service connects as its own role on the embedded server (as in Compose).
    envs = {
        service: {"DATABASE_URL": url if settings.database_url else service_role_url(url, service)}
        for service in services
    }
    processes: list[ServiceProcess] = []
    seeder: subprocess.Popen[bytes] | None = None
    prometheus: ServiceProcess | None = None
    gateway = None
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    parent = ParentWatch()
    try:
        for service in services:
            print(f"launcher | migrating {service}", flush=True)
            migrate(service, envs[service])
        processes = _start_services(services, envs, settings)
        for process in processes:
            process.wait_ready(60)
            print(f"launcher | {process.service:<9} ready at {process.url}/docs", flush=True)
        prometheus = _start_prometheus(processes, Path(settings.data_dir))
        gateway = _start_frontends_and_gateway(processes, envs, settings)
        if os.environ.get("SHOP_DEMO", "1") != "0":
            seeder = _start_seeder()
        print("launcher | press Ctrl-C to stop", flush=True)
        while not stopping.wait(0.25):
            if any(p.process is not None and p.process.poll() is not None for p in processes):
                print("launcher | a service exited; stopping", flush=True)
                return 1
            if parent.stopping():
                print("launcher | make was interrupted; stopping", flush=True)
                return 0
        return 0
    finally:
        stop_started = time.monotonic()
        # The embedded server checkpoints while the children stop, so that stopping it
        # (a shutdown checkpoint, waited for) has little left to write.
        checkpoint = _checkpoint_in_background(url) if server is not None else None
        _stop(seeder, processes, prometheus, gateway)
        if checkpoint is not None:
            checkpoint.join(STOP_GRACE_S)
        if server is not None:
            server.cleanup()  # type: ignore[attr-defined]
        print(f"launcher | stopped in {time.monotonic() - stop_started:.1f} s", flush=True)


def _checkpoint_in_background(url: str) -> threading.Thread:
    """Start a ``CHECKPOINT`` while the services drain, so the server's own shutdown
    checkpoint, which stopping it waits for, has little left to write."""

    def run() -> None:
        from sqlalchemy import create_engine, text  # noqa: PLC0415
        from sqlalchemy.pool import NullPool  # noqa: PLC0415

        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(text("CHECKPOINT"))
        except Exception as exc:  # only a head start: stopping works without it
            print(f"launcher | checkpoint skipped: {exc}", flush=True)
        finally:
            engine.dispose()

    thread = threading.Thread(target=run, name="checkpoint", daemon=True)
    thread.start()
    return thread


#: Where ``make run``'s Prometheus listens, when there is a ``prometheus`` binary.
PROMETHEUS_ADDRESS = "127.0.0.1:9090"


def _start_prometheus(services: list[ServiceProcess], data_dir: Path) -> ServiceProcess | None:
    """Start Prometheus on the repo's config and rules, scraping these services (if installed).

    The config is ``deploy/observability/prometheus.yml``'s with the local
    ports as targets; data goes to ``<data dir>/prometheus``. Without a
    ``prometheus`` binary (or with ``SHOP_PROMETHEUS=0``), say how to get one.
    """
    import shutil  # noqa: PLC0415

    binary = shutil.which("prometheus")
    if binary is None or os.environ.get("SHOP_PROMETHEUS") == "0":
        print(
            "launcher | metrics: each service's /metrics; for Prometheus and the alert rules, "
            "apt-get install prometheus (make run then starts it) or docker compose up",
            flush=True,
        )
        return None
    # deploy/observability/prometheus.yml with local targets (JSON is YAML too).
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(PROJECT_ROOT / "deploy" / "observability" / "alerts.yml")],
        "scrape_configs": [
            {
                "job_name": "shop",
                "honor_labels": True,
                "static_configs": [
                    {"targets": [f"127.0.0.1:{p.port}"], "labels": {"service": p.service}}
                    for p in services
                ],
            }
        ],
    }
    (data_dir / "prometheus").mkdir(parents=True, exist_ok=True)
    config_path = data_dir / "prometheus" / "prometheus.yml"
    config_path.write_text(json.dumps(config, indent=2))
    process = ServiceProcess("prometheus", int(PROMETHEUS_ADDRESS.rsplit(":", 1)[1]))
    process.process = subprocess.Popen(  # noqa: S603
        [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={data_dir / 'prometheus' / 'data'}",
            f"--web.listen-address={PROMETHEUS_ADDRESS}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    print(f"launcher | prometheus at http://{PROMETHEUS_ADDRESS} (alerts: /alerts)", flush=True)
    return process


def _start_gateway(processes: list[ServiceProcess]) -> Gateway | None:
    """Start the nginx gateway in front of ``processes`` when nginx is installed (else say so)."""
    from shopkit.gateway import start_local  # noqa: PLC0415

    upstreams = {p.service: f"127.0.0.1:{p.port}" for p in processes}
    gateway, message = start_local(upstreams, subprocess.PIPE)
    if gateway is not None and gateway.process is not None and gateway.process.stdout is not None:
        threading.Thread(
            target=_pump, args=("gateway  ", gateway.process.stdout), daemon=True
        ).start()
    print(f"launcher | {message}", flush=True)
    return gateway


def _start_frontends_and_gateway(
    processes: list[ServiceProcess], envs: dict[str, dict[str, str]], settings: Settings
) -> Gateway | None:
    """Start the storefront, then the gateway in front of it all (it needs every port).

    The front ends are appended to ``processes``; says where to open the storefront:
    through the gateway when it runs, and directly.
    """
    from shopkit.gateway import STOREFRONT_PATH  # noqa: PLC0415

    frontends = _start_services(present_frontends(), envs, settings)
    processes.extend(frontends)
    for process in frontends:
        process.wait_ready(60)
    gateway = _start_gateway(processes)
    for process in frontends:
        if gateway is None:
            where = f"{process.url} in a browser"
        else:
            where = f"{gateway.url}{STOREFRONT_PATH} in a browser (directly: {process.url})"
        print(f"launcher | storefront ready: open {where}", flush=True)
    return gateway


def _start_seeder() -> subprocess.Popen[bytes]:
    """Run ``seeder demo``: populate, then replay shoppers gently until stopped.

    The populate is idempotent, so on a restart it skips the customers and
    products that already exist and creates nothing new.
    ``SHOP_SEED_CUSTOMERS`` / ``SHOP_SEED_PRODUCTS`` size the demo data;
    ``SHOP_DEMO=0`` turns seeding and replay off.
    """
    command = [
        sys.executable,
        "-m",
        "seeder",
        "demo",
        "--customers",
        os.environ.get("SHOP_SEED_CUSTOMERS", "200"),
        "--products",
        os.environ.get("SHOP_SEED_PRODUCTS", "100"),
    ]
    process = subprocess.Popen(  # noqa: S603
        command,
        env=dict(os.environ),  # the seeder only talks HTTP: no database URL
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    threading.Thread(target=_pump, args=("seeder   ", process.stdout), daemon=True).start()
    return process


def main() -> None:
    """Console entry point of ``shop-run`` (what ``make run`` calls).

    Once everything is stopped the launcher leaves at once: tearing its interpreter
    down (pgserver, SQLAlchemy, requests...) would only add a second to Ctrl-C.
    """
    code = run_local()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
