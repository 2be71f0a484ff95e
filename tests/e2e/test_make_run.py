"""``make run`` itself: it comes up ready with seeded data, and Ctrl-C stops everything.

Both ways of interrupting it stop every process, quickly: Ctrl-C in a terminal (SIGINT to
the whole process group) and SIGINT to ``make`` alone, as a script or a supervisor sends it
(GNU make does not pass it on; the launcher notices make handling it). A launcher killed
with SIGKILL takes everything it started with it, too.

Every process a test starts carries a marker in its environment; whatever happens, the
test ends by killing every process still carrying it (orphans and the embedded PostgreSQL
included), so a failing run leaves nothing holding ports.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import pytest
import redis
import requests

from shopkit.config import PROJECT_ROOT
from shopkit.registry import SERVICE_NAMES
from tests.support.database import STOREFRONT_PATH, free_port, nginx_binary
from tests.support.ports import port_is_free

pytestmark = pytest.mark.processes

SERVICES = SERVICE_NAMES
#: The environment variable that marks every process a test started (inherited by all).
MARKER = "SHOP_MAKE_RUN_TEST"


def wait_ready(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not ready")


def marked(run_id: str, ports: Iterable[int] = ()) -> list[psutil.Process]:
    """Every live process whose environment carries ``MARKER=run_id`` or that listens on ``ports``.

    nginx clears its environment, so the gateway is found by its port.
    """
    listening = {
        conn.pid for conn in psutil.net_connections("tcp")
        if conn.pid and conn.status == psutil.CONN_LISTEN and conn.laddr.port in set(ports)
    }  # fmt: skip
    found = [psutil.Process(pid) for pid in listening if psutil.pid_exists(pid)]
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER) == run_id and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def kill_marked(run_id: str, ports: Iterable[int]) -> None:
    """SIGKILL every process the test started, wherever it ended up."""
    for process in marked(run_id, ports):
        with suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(marked(run_id, ports), timeout=5)


@contextmanager
def stack_env() -> Iterator[tuple[dict[str, str], dict[str, int], Path, str]]:
    """The environment of one ``make run``; everything it started is killed afterwards."""
    run_id = uuid.uuid4().hex
    ports = {name: free_port() for name in SERVICES}
    ports["storefront"] = free_port()
    ports["gateway"] = free_port()
    ports["notifications-worker"] = free_port()  # its /metrics (WORKER_METRICS_PORT)
    data_dir = Path(tempfile.mkdtemp(prefix="shop-make-run-"))
    (data_dir / "tmp").mkdir()
    env = {
        **os.environ,
        MARKER: run_id,
        "SHOP_DATA_DIR": str(data_dir),
        "TMPDIR": str(data_dir / "tmp"),  # what the stack leaves there, the test sees
        "ADMIN_USERNAME": "admin",
        "ADMIN_PASSWORD": "make-run-admin",
        "SERVICE_CLIENT_SECRET": "make-run-secret",
        "SHOP_SEED_CUSTOMERS": "20",
        "SHOP_SEED_PRODUCTS": "15",
        "STOREFRONT_PORT": str(ports["storefront"]),
        "SHOP_GATEWAY_PORT": str(ports["gateway"]),
        "WORKER_METRICS_PORT": str(ports["notifications-worker"]),
        **{f"{name.upper()}_URL": f"http://127.0.0.1:{ports[name]}" for name in SERVICES},
    }
    env.pop("DATABASE_URL", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        yield env, ports, data_dir, run_id
    finally:
        kill_marked(run_id, ports.values())
        shutil.rmtree(data_dir, ignore_errors=True)  # a database and a broker: tens of MiB


@pytest.mark.parametrize("interrupt", ["process group", "make alone"])
def test_make_run_starts_seeds_and_stops_on_ctrl_c(interrupt: str) -> None:
    with stack_env() as (env, ports, data_dir, run_id):
        check_run_and_interrupt(interrupt, env, ports, data_dir, run_id)


def check_run_and_interrupt(
    interrupt: str, env: dict[str, str], ports: dict[str, int], data_dir: Path, run_id: str
) -> None:
    storefront_port, gateway_port = ports["storefront"], ports["gateway"]
    log = (data_dir / "make-run.log").open("wb")
    make = subprocess.Popen(
        ["make", "--no-print-directory", "run"], cwd=PROJECT_ROOT, env=env,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    descendants: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        for name in SERVICES:
            wait_ready(f"http://127.0.0.1:{ports[name]}", deadline)
        wait_ready(f"http://127.0.0.1:{storefront_port}", deadline)  # the storefront, too
        # Demo data is seeded once the services are up.
        while time.monotonic() < deadline:
            total = requests.get(
                f"http://127.0.0.1:{ports['inventory']}/products", timeout=5
            ).json()["total"]
            if total >= 15:
                break
            time.sleep(0.5)
        assert total >= 15, (data_dir / "make-run.log").read_text()[-3000:]
        catalog = requests.get(f"http://127.0.0.1:{ports['sales']}/catalog", timeout=5).json()
        assert catalog["items"]
        shop_page = requests.get(f"http://127.0.0.1:{storefront_port}/", timeout=5)
        assert shop_page.status_code == 200 and "Catalogue" in shop_page.text
        output = (data_dir / "make-run.log").read_text()
        if nginx_binary() is not None:  # make test installs it; without it, make run says so
            gateway = f"http://127.0.0.1:{gateway_port}"
            assert f"ready at {gateway}" in output, output[-3000:]
            assert requests.get(gateway + "/catalog", timeout=5).json() == catalog
            assert requests.get(gateway + "/metrics", timeout=5).status_code == 404
            # Started after the storefront, so it serves it too, and make run says where.
            assert f"open {gateway}{STOREFRONT_PATH} in a browser" in output, output[-3000:]
            through = requests.get(gateway + STOREFRONT_PATH, timeout=5)
            assert through.status_code == 200 and "Catalogue" in through.text
        else:
            assert "nginx is not installed" in output and "apt-get install nginx" in output
        check_events_and_mail(output, data_dir, ports["notifications-worker"])
        descendants = psutil.Process(make.pid).children(recursive=True)
        assert len(descendants) >= 8  # launcher, 4 gunicorn masters and their workers, ...
        assert "valkey-server" in {p.name() for p in descendants}
    finally:
        if interrupt == "process group":
            os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        else:
            os.kill(make.pid, signal.SIGINT)  # what `kill -INT <make's pid>` in a script does
        started = time.monotonic()
        try:
            make.wait(timeout=20)
        finally:
            if make.poll() is None:
                os.killpg(make.pid, signal.SIGKILL)
    stopped_in = time.monotonic() - started
    assert stopped_in < 10, (data_dir / "make-run.log").read_text()[-3000:]
    print(f"make run stopped ({interrupt}) in {stopped_in:.2f} s")
    time.sleep(0.5)
    alive = [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [p.cmdline() for p in alive]
    assert all(port_is_free(port) for port in ports.values())
    postgres = [
        p for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and str(data_dir) in " ".join(p.info["cmdline"])
    ]  # fmt: skip
    assert not postgres, "the embedded PostgreSQL was left running"
    left = marked(run_id, ports.values())
    assert not left, [p.cmdline() for p in left]
    # Nor any temporary file: gunicorn's scratch directories, nginx's prefix, shared faults.
    # (pgserver keeps one lock directory per user, platformdirs' runtime dir, for every run.)
    temporary = {p.name for p in (data_dir / "tmp").iterdir()} - {f"runtime-{os.geteuid()}"}
    assert not temporary, temporary


def check_events_and_mail(output: str, data_dir: Path, worker_port: int) -> None:
    """The embedded broker (AOF under the data dir), the mail sink and the notifications worker,
    its metrics served on its own port and scraped by make run's Prometheus."""
    found = re.search(r"event broker at (redis://\S+)", output)
    assert found, output[-3000:]
    broker = redis.Redis.from_url(found.group(1), socket_timeout=5)
    try:
        assert broker.ping()
        assert broker.config_get("appendonly") == {"appendonly": "yes"}
        assert Path(broker.config_get("dir")["dir"]) == data_dir / "valkey"
        # The worker made its consumer group on the order stream.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if broker.exists("events:order") and any(
                g["name"] == b"notifications" for g in broker.xinfo_groups("events:order")
            ):
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"no notifications group on the broker:\n{output[-3000:]}")
    finally:
        broker.close()
    sink = re.search(r"mail sink at smtp://127\.0\.0\.1:(\d+)", output)
    assert sink, output[-3000:]
    with smtplib.SMTP("127.0.0.1", int(sink.group(1)), timeout=5) as smtp:
        assert smtp.noop()[0] == 250
    assert (data_dir / "mail").is_dir()
    assert "notifications-worker consuming" in output, output[-3000:]
    metrics = f"http://127.0.0.1:{worker_port}/metrics"
    assert f"metrics at {metrics}" in output, output[-3000:]
    served = requests.get(metrics, timeout=5).text
    for series in (
        'shop_consumer_lag_seconds{group="notifications",stream="events:order"}',
        'shop_events_consumed_total{group="notifications",outcome="dead_lettered"}',
        'shop_dead_letters{group="notifications"}',
    ):
        assert series in served, served[-3000:]
    scraped = data_dir / "prometheus" / "prometheus.yml"
    if scraped.exists():  # make run's Prometheus, when installed
        assert f"127.0.0.1:{worker_port}" in scraped.read_text()


def test_a_launcher_killed_with_sigkill_takes_everything_with_it() -> None:
    with stack_env() as (env, ports, data_dir, run_id):
        log_path = data_dir / "launcher.log"
        with log_path.open("wb") as log:
            launcher = subprocess.Popen(
                [sys.executable, "-m", "devstack"], cwd=PROJECT_ROOT, env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        for name in SERVICES:
            wait_ready(f"http://127.0.0.1:{ports[name]}", deadline)
        while "press Ctrl-C" not in log_path.read_text() and time.monotonic() < deadline:
            assert launcher.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.3)
        started = [p for p in marked(run_id, ports.values()) if p.pid != launcher.pid]
        # valkey-server rewrites its process title over its environment: found as a child.
        started += [
            p for p in psutil.Process(launcher.pid).children(recursive=True)
            if p.pid not in {s.pid for s in started}
        ]  # fmt: skip
        names = {p.name() for p in started}
        # gunicorn masters and workers, the seeder, the embedded PostgreSQL and Valkey, the
        # notifications worker, the watchdog
        assert len(started) >= 12 and {"postgres", "valkey-server"} <= names, sorted(names)
        if nginx_binary() is not None:
            assert "nginx" in names, sorted(names)

        launcher.kill()
        launcher.wait(timeout=5)
        killed_at = time.monotonic()
        _gone, alive = psutil.wait_procs(started, timeout=10)
        assert not alive, [(p.pid, p.name()) for p in alive]
        print(f"everything gone {time.monotonic() - killed_at:.2f} s after the SIGKILL")
        assert all(port_is_free(port) for port in ports.values())
