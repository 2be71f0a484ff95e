"""``make run`` (``shop-run``, ``python -m devstack``): the whole shop on this machine.

It starts PostgreSQL (the embedded one unless ``DATABASE_URL`` is set), the
event broker (the embedded Valkey of :mod:`devstack.broker` unless
``EVENTS_URL`` is set), a local mail sink (:mod:`devstack.mailsink`, unless
``SMTP_URL`` is set), applies every service's migrations, starts the apps of
:mod:`shopkit.registry` under gunicorn with the notifications worker,
Prometheus and the nginx gateway when installed, and the seeder's demo;
Ctrl-C stops everything. Every service gets ``EVENTS_URL`` and ``SMTP_URL``; on the
embedded broker the storefront's ``EVENTS_URL`` is its own broker user's, which may only
read the order stream (:data:`devstack.broker.STOREFRONT_RULES`).
Every child dies with the launcher, even when the launcher is killed with
SIGKILL (:mod:`devstack.watchdog`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from devstack import broker as embedded_broker
from devstack import mailsink, postgres, roles
from devstack.gateway import STOREFRONT_PATH, Gateway, start_local
from devstack.parent_watch import ParentWatch
from devstack.processes import ServiceProcess, WorkerProcess, migrate, spawn
from devstack.prometheus import start_prometheus
from devstack.watchdog import Watchdog
from shopkit.config import PROJECT_ROOT, Settings
from shopkit.db import normalise_url
from shopkit.registry import FRONTENDS, SERVICES, app


def present_services() -> list[str]:
    """The services whose packages exist in this checkout, in start order."""
    return [s.name for s in SERVICES if _present(s.package, migrations=True)]


def present_frontends() -> list[str]:
    """The front ends whose packages exist in this checkout."""
    return [f.name for f in FRONTENDS if _present(f.package, migrations=False)]


def _present(package: str, *, migrations: bool) -> bool:
    """Whether ``package`` is a regular package here (with its migrations, if asked)."""
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        return False
    return not migrations or (Path(spec.origin).parent / "migrations").is_dir()


def _pump(prefix: str, stream: IO[bytes]) -> None:
    """Copy a child's output to ours, each line prefixed with its service name."""
    for raw in iter(stream.readline, b""):
        sys.stdout.write(f"{prefix} | {raw.decode(errors='replace')}")
        sys.stdout.flush()


def _service_port(url: str) -> int:
    """The port of a service URL such as ``http://127.0.0.1:5000``."""
    return int(url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])


def _start_services(
    services: list[str], envs: dict[str, dict[str, str]], settings: Settings
) -> list[ServiceProcess]:
    """Start each app under gunicorn on its configured port, output prefixed with its name."""
    processes = []
    for service in services:
        entry = app(service)
        # a front end has no database: it only talks HTTP
        env = {**entry.layout_env(), **envs.get(service, envs[SHARED])}
        if entry.has_database:
            port = _service_port(getattr(settings, f"{service}_url"))
        else:
            port = int(os.environ.get(f"{service.upper()}_PORT") or entry.port)
        process = ServiceProcess(
            service, port, env=env, workers=entry.workers, threads=entry.threads
        )
        process.log = subprocess.PIPE
        process.start()
        assert process.process is not None and process.process.stdout is not None
        threading.Thread(
            target=_pump, args=(f"{service:<9}", process.process.stdout), daemon=True
        ).start()
        processes.append(process)
    return processes


#: The key in the launcher's environments of what every child gets (broker, mail server).
SHARED = ""
#: The consumer workers: (service, module run with ``python -m``).
WORKERS = (("notifications", "notifications_service.worker"),)


def _start_workers(services: list[str], envs: dict[str, dict[str, str]]) -> list[WorkerProcess]:
    """Start the event consumers of the ``services`` present, output prefixed like theirs."""
    workers = []
    for service, module in WORKERS:
        if service not in services:
            continue
        port = Settings.from_env(service).worker_metrics_port
        worker = WorkerProcess(
            f"{service}-worker",
            module,
            env={**envs[service], "WORKER_METRICS_PORT": str(port)},
            log=subprocess.PIPE,
            metrics_port=port,
        )
        worker.start()
        assert worker.process is not None and worker.process.stdout is not None
        threading.Thread(
            target=_pump, args=(f"{service[:6]}-wk", worker.process.stdout), daemon=True
        ).start()
        workers.append(worker)
    return workers


def _service_envs(
    services: list[str], shared: dict[str, str], url: str, *, own_roles: bool
) -> dict[str, dict[str, str]]:
    """What each service's processes get besides the launcher's environment, and under
    :data:`SHARED` what every other child gets."""
    envs = {
        service: {
            **shared,
            # Each service connects as its own role on the embedded server (as in Compose).
            "DATABASE_URL": roles.service_role_url(url, service) if own_roles else url,
        }
        for service in services
    }
    for service, _module in WORKERS:
        if service in envs:  # the app and its worker share the service's live faults
            envs[service]["SHOP_FAULTS_DIR"] = tempfile.mkdtemp(prefix=f"shop-faults-{service}-")
    envs[SHARED] = shared
    return envs


def _stop_database(server: object | None, checkpoint: threading.Thread | None) -> None:
    """Stop the embedded server (if it is ours) once its checkpoint in the background ended."""
    if checkpoint is not None:
        checkpoint.join(STOP_GRACE_S)
    if server is not None:
        server.cleanup()  # type: ignore[attr-defined]


def _remove_shared_faults(envs: dict[str, dict[str, str]]) -> None:
    """Remove the live-fault directories :func:`_service_envs` made (every process is gone)."""
    for env in envs.values():
        if "SHOP_FAULTS_DIR" in env:
            shutil.rmtree(env["SHOP_FAULTS_DIR"], ignore_errors=True)


def _frontend_envs(
    shared: dict[str, str], broker: embedded_broker.Broker | None
) -> dict[str, dict[str, str]]:
    """What each front end gets: what every child gets, but on the embedded broker the
    storefront connects as its own user (an ``EVENTS_URL`` of the launcher's: the same)."""
    if broker is None:
        return {}
    return {"storefront": {**shared, "EVENTS_URL": broker.storefront_url}}


def _events_and_mail(
    settings: Settings, watchdog: Watchdog
) -> tuple[embedded_broker.Broker | None, mailsink.MailSink | None, dict[str, str]]:
    """The broker (embedded, guarded by ``watchdog``, unless ``EVENTS_URL`` is set) and the
    mail server (a local sink unless ``SMTP_URL`` is set): the embedded ones (or ``None``)
    and the environment every child gets (``EVENTS_URL``, ``SMTP_URL``)."""
    broker = sink = None
    events_url = os.environ.get("EVENTS_URL") or ""
    if not events_url:
        broker = embedded_broker.start(Path(settings.data_dir) / "valkey", durable=True)
        events_url = broker.url
        _guard(watchdog, broker.process)
    print(f"launcher | event broker at {_without_password(events_url)}", flush=True)
    smtp_url = os.environ.get("SMTP_URL") or ""
    if not smtp_url:
        sink = mailsink.start(Path(settings.data_dir) / "mail")
        smtp_url = sink.url
        print(f"launcher | mail sink at {smtp_url}, keeping mails in {sink.directory}", flush=True)
    return broker, sink, {"EVENTS_URL": events_url, "SMTP_URL": smtp_url}


def _without_password(url: str) -> str:
    """``url`` fit for the log: a password in it replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _stop_events_and_mail(
    broker: embedded_broker.Broker | None, sink: mailsink.MailSink | None
) -> None:
    """Stop the embedded broker (after the services: their last events are in) and sink."""
    if broker is not None:
        broker.stop()
    if sink is not None:
        sink.stop()


def _any_exited(children: Sequence[ServiceProcess | WorkerProcess]) -> bool:
    """Whether one of ``children`` has exited."""
    return any(c.process is not None and c.process.poll() is not None for c in children)


#: Seconds the launcher gives every child to stop on its own before SIGKILL.
STOP_GRACE_S = 8.0


def _stop(
    seeder: subprocess.Popen[bytes] | None,
    processes: Sequence[ServiceProcess | WorkerProcess],
    prometheus: ServiceProcess | None,
    gateway: Gateway | None,
) -> None:
    """Stop everything at once: signal every child first, then wait for them together.

    The seeder gets SIGINT (the replay prints its summary and exits), gunicorn
    SIGTERM (it drains its requests), nginx SIGQUIT, Prometheus SIGTERM; each
    process group still there after :data:`STOP_GRACE_S` is killed. Then each removes
    its temporary files (gunicorn's scratch directory, nginx's prefix).
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
    for stopped in (*processes, prometheus, gateway):  # all gone: their temporary files go too
        if stopped is not None:
            stopped.stop()


def run_local(services: list[str] | None = None) -> int:
    """``make run``: database, migrations, services under gunicorn, demo data; Ctrl-C stops all.

    Uses ``DATABASE_URL`` if set, else the embedded PostgreSQL under ``.data/``
    (stopped again on exit); ``EVENTS_URL`` and ``SMTP_URL`` likewise, else the
    embedded broker and the local mail sink. Ports come from ``CUSTOMERS_URL`` ...
    ``NOTIFICATIONS_URL`` (default 5000-5004); the storefront listens on
    ``STOREFRONT_PORT`` (8080).
    Returns the exit status.
    """
    services = services or present_services()
    settings = Settings.from_env("launcher")
    watchdog = Watchdog()
    server, url = _database(settings, watchdog)
    broker, sink, shared = _events_and_mail(settings, watchdog)
    envs = _service_envs(services, shared, url, own_roles=server is not None)
    envs.update(_frontend_envs(shared, broker))
    processes: list[ServiceProcess] = []
    workers: list[WorkerProcess] = []
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
        workers = _start_workers(services, envs)
        _guard(watchdog, *(p.process for p in processes), *(w.process for w in workers))
        for process in processes:
            process.wait_ready(60)
            print(f"launcher | {process.service:<9} ready at {process.url}/docs", flush=True)
        for worker in workers:
            print(
                f"launcher | {worker.name} consuming (pid {worker.pid}), metrics at "
                f"http://127.0.0.1:{worker.metrics_port}/metrics",
                flush=True,
            )
        prometheus = start_prometheus(
            processes, Path(settings.data_dir), [(w.name, w.metrics_port) for w in workers]
        )
        _guard(watchdog, prometheus.process if prometheus else None)
        gateway = _start_frontends_and_gateway(processes, envs, settings, watchdog)
        if os.environ.get("SHOP_DEMO", "1") != "0":
            seeder = _start_seeder()
            _guard(watchdog, seeder)
        print("launcher | press Ctrl-C to stop", flush=True)
        while not stopping.wait(0.25):
            if _any_exited([*processes, *workers]):
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
        _stop(seeder, [*processes, *workers], prometheus, gateway)
        _stop_events_and_mail(broker, sink)
        _stop_database(server, checkpoint)
        _remove_shared_faults(envs)
        watchdog.release()
        print(f"launcher | stopped in {time.monotonic() - stop_started:.1f} s", flush=True)


def _database(settings: Settings, watchdog: Watchdog) -> tuple[object | None, str]:
    """``DATABASE_URL``'s server, or the embedded one (guarded by ``watchdog``) with its roles.

    Returns the embedded server (``None`` for ``DATABASE_URL``) and the admin URL.
    """
    if settings.database_url:
        return None, normalise_url(settings.database_url)
    pg_dir = Path(settings.data_dir) / "pg"
    server, url = postgres.start(pg_dir, cleanup_mode="stop")
    watchdog.guard_postgres(pg_dir)
    roles.ensure_service_roles(server, url)
    return server, url


def _guard(watchdog: Watchdog, *children: subprocess.Popen[bytes] | None) -> None:
    """Have the watchdog kill these children's process groups should the launcher die."""
    for child in children:
        if child is not None:
            watchdog.guard_group(child.pid)  # each child leads a session of its own


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


def _start_gateway(processes: list[ServiceProcess]) -> Gateway | None:
    """Start the nginx gateway in front of ``processes`` when nginx is installed (else say so)."""
    upstreams = {p.service: f"127.0.0.1:{p.port}" for p in processes}
    gateway, message = start_local(upstreams, subprocess.PIPE)
    if gateway is not None and gateway.process is not None and gateway.process.stdout is not None:
        threading.Thread(
            target=_pump, args=("gateway  ", gateway.process.stdout), daemon=True
        ).start()
    print(f"launcher | {message}", flush=True)
    return gateway


def _start_frontends_and_gateway(
    processes: list[ServiceProcess],
    envs: dict[str, dict[str, str]],
    settings: Settings,
    watchdog: Watchdog,
) -> Gateway | None:
    """Start the storefront, then the gateway in front of it all (it needs every port).

    The front ends are appended to ``processes``; says where to open the storefront:
    through the gateway when it runs, and directly.
    """
    frontends = _start_services(present_frontends(), envs, settings)
    _guard(watchdog, *(p.process for p in frontends))
    processes.extend(frontends)
    for process in frontends:
        process.wait_ready(60)
    gateway = _start_gateway(processes)
    _guard(watchdog, gateway.process if gateway else None)
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
    process = spawn(
        command,
        env=dict(os.environ),  # the seeder only talks HTTP: no database URL
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
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
