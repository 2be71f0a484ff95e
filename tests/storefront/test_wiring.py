"""The storefront's wiring: its Compose service runs as written, and htmx ships with its licence."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from shopkit.config import PROJECT_ROOT
from tests.support.compose import interpolate
from tests.support.database import free_port, scratch_env

pytestmark = pytest.mark.processes

HTMX = PROJECT_ROOT / "storefront" / "static" / "vendor" / "htmx"


def test_compose_storefront_command_becomes_healthy(live_stack: Any, tmp_path: Path) -> None:
    for service in ("customers", "inventory", "sales", "reviews"):
        live_stack.start(service)
    services = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]
    storefront = services["storefront"]
    assert storefront["ports"] == ["127.0.0.1:8080:8080"]
    assert all(storefront["depends_on"][s] == {"condition": "service_healthy"}
               for s in ("customers", "inventory", "sales", "reviews"))  # fmt: skip
    assert "/readyz" in " ".join(storefront["healthcheck"]["test"])
    env = {key: interpolate(str(value), {}) for key, value in storefront["environment"].items()}
    assert "DATABASE_URL" not in env  # it owns no data
    assert env["WEB_CONCURRENCY"] == "1"
    for port, name in enumerate(("customers", "inventory", "sales", "reviews"), start=5000):
        env = {k: v.replace(f"http://{name}:{port}", live_stack.url(name)) for k, v in env.items()}
    env["PORT"] = str(free_port())
    env = {
        **os.environ,
        **env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    env.update(scratch_env(tmp_path))
    log = live_stack.log_dir / "compose-storefront.log"
    process = subprocess.Popen(
        [interpolate(part, {}) for part in storefront["command"]], env=env, cwd=PROJECT_ROOT,
        start_new_session=True, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            probe = subprocess.run(storefront["healthcheck"]["test"][1:], env=env,
                                   capture_output=True, timeout=10, check=False)  # fmt: skip
            if probe.returncode == 0:
                break
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the storefront never became healthy"
            time.sleep(0.3)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_htmx_is_vendored_with_its_licence() -> None:
    script = (HTMX / "htmx.min.js").read_bytes()
    assert hashlib.sha256(script).hexdigest() == (
        "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"  # htmx.org 2.0.11
    )
    assert "Zero-Clause BSD" in (HTMX / "LICENSE").read_text()
    base = (PROJECT_ROOT / "storefront" / "templates" / "base.html").read_text()
    assert "vendor/htmx/htmx.min.js" in base and "https://" not in base  # nothing fetched
