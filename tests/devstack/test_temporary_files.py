"""A service run leaves no temporary files behind: its scratch directory (pooled metrics,
live faults) goes when it stops or is killed, and a gunicorn master or a process that made
its own directories removes them when it exits.

Each process runs with ``TMPDIR`` pointing at a directory of the test's, so whatever it
made and left there is seen.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from shopkit.config import PROJECT_ROOT
from tests.support.database import ServiceProcess, free_port
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, bearer

pytestmark = pytest.mark.processes


@pytest.fixture
def temp_dir(tmp_path: Path) -> Path:
    """The ``TMPDIR`` of the processes under test."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    return directory


@pytest.mark.parametrize("end", ["stop", "kill"])
def test_a_service_run_keeps_its_files_in_one_scratch_directory_that_goes_with_it(
    live_stack: Any, temp_dir: Path, end: str
) -> None:
    live_stack.start("customers")
    service = ServiceProcess(
        "reviews", free_port(), env={**live_stack.env("reviews"), "TMPDIR": str(temp_dir)}
    )
    service.start().wait_ready()
    try:
        scratch = service.scratch
        assert scratch is not None and scratch.is_dir()
        # A live fault switched on lands in the run's faults directory...
        switched = requests.put(
            service.url + "/admin/faults",
            json={"faults": [{"dependency": "customers", "kind": "latency", "latency_ms": 1}]},
            headers=bearer(live_stack.token(ADMIN_USERNAME, ADMIN_PASSWORD)),
            timeout=10,
        )
        assert switched.status_code == 200, switched.text
        assert [p.name for p in (scratch / "faults").iterdir()] == ["reviews.json"]
        # ... and the workers' metrics in its metrics directory.
        assert requests.get(service.url + "/metrics", timeout=10).status_code == 200
        assert any((scratch / "metrics").glob("*.db"))
        assert not any(temp_dir.iterdir())  # the master made no directory of its own
    finally:
        service.stop() if end == "stop" else service.kill()
    assert not scratch.exists()
    assert service.scratch is None


def test_a_gunicorn_master_removes_the_directories_it_made_for_itself(
    live_stack: Any, temp_dir: Path
) -> None:
    """Run as Compose and Kubernetes run it: no directory given, gunicorn makes its own."""
    env = {**os.environ, **live_stack.env("reviews"), "TMPDIR": str(temp_dir)}
    for given in ("PROMETHEUS_MULTIPROC_DIR", "SHOP_FAULTS_DIR"):
        env.pop(given, None)
    service = ServiceProcess("reviews", free_port(), workers=1)
    master = subprocess.Popen(
        service.command(), env=env, cwd=PROJECT_ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        service.process = master
        service.wait_ready()
        made = sorted(p.name.rsplit("-", 1)[0] for p in temp_dir.iterdir())
        assert made == ["shop-faults", "shop-metrics"]
    finally:
        os.killpg(master.pid, signal.SIGTERM)
        master.wait(timeout=15)
    assert master.returncode == 0
    assert not any(temp_dir.iterdir())


#: Scripts that make a process's own directory and print it.
OWN_DIRECTORIES = {
    "faults": "from shopkit import faults; print(faults.faults_dir())",
    # What importing every module does (tests/compose): the config module, outside gunicorn.
    "gunicorn config": (
        "import os, shopkit.gunicorn_conf; print(os.environ['PROMETHEUS_MULTIPROC_DIR'])"
    ),
}


@pytest.mark.parametrize("script", OWN_DIRECTORIES.values(), ids=OWN_DIRECTORIES.keys())
def test_a_process_removes_the_directories_it_made_for_itself_when_it_exits(
    temp_dir: Path, script: str
) -> None:
    env = {**os.environ, "TMPDIR": str(temp_dir)}
    for given in ("PROMETHEUS_MULTIPROC_DIR", "SHOP_FAULTS_DIR"):
        env.pop(given, None)
    made = subprocess.run(
        [sys.executable, "-c", script],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    path = Path(made.stdout.strip())
    assert path.parent == temp_dir and path.name.startswith("shop-")
    assert not any(temp_dir.iterdir())
