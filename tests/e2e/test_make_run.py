"""``make run`` itself: it comes up ready with seeded data, and Ctrl-C stops everything.

Both ways of interrupting it stop every process, quickly: Ctrl-C in a terminal (SIGINT to
the whole process group) and SIGINT to ``make`` alone, as a script or a supervisor sends it
(GNU make does not pass it on; the launcher notices make handling it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import requests

from shopkit.config import PROJECT_ROOT
from tests.support.database import STOREFRONT_PATH, free_port, nginx_binary

pytestmark = pytest.mark.processes

SERVICES = ("customers", "inventory", "sales", "reviews")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As a server would (gunicorn does): closed connections in TIME_WAIT don't count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_ready(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not ready")


@pytest.mark.parametrize("interrupt", ["process group", "make alone"])
def test_make_run_starts_seeds_and_stops_on_ctrl_c(interrupt: str) -> None:
    ports = {name: free_port() for name in SERVICES}
    storefront_port = free_port()
    gateway_port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="shop-make-run-"))
    env = {
        **os.environ,
        "SHOP_DATA_DIR": str(data_dir),
        "ADMIN_USERNAME": "admin",
        "ADMIN_PASSWORD": "make-run-admin",
        "SERVICE_CLIENT_SECRET": "make-run-secret",
        "SHOP_SEED_CUSTOMERS": "20",
        "SHOP_SEED_PRODUCTS": "15",
        "STOREFRONT_PORT": str(storefront_port),
        "SHOP_GATEWAY_PORT": str(gateway_port),
        **{f"{name.upper()}_URL": f"http://127.0.0.1:{port}" for name, port in ports.items()},
    }
    env.pop("DATABASE_URL", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
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
        if nginx_binary() is not None:  # .ci/run installs it; without it, make run says so
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
        descendants = psutil.Process(make.pid).children(recursive=True)
        assert len(descendants) >= 8  # launcher, 4 gunicorn masters and their workers, ...
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
    assert all(port_is_free(port) for port in [*ports.values(), storefront_port, gateway_port])
    postgres = [
        p for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and str(data_dir) in " ".join(p.info["cmdline"])
    ]  # fmt: skip
    assert not postgres, "the embedded PostgreSQL was left running"
