"""The nginx gateway on this machine (``make run`` and the tests), from ``deploy/gateway/``.

The repository's nginx configuration is used as it is: ``nginx.conf``,
``http.conf`` and ``locations.conf`` are copied unchanged into a temporary
prefix, and only ``site.conf`` (where the services are and the port to
listen on; Compose and Kubernetes use the committed one) is written for the
local addresses. nginx runs in the foreground as a child process, never as a
system service.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from devstack.processes import spawn, stop_group, wait_until_ok
from shopkit.config import PROJECT_ROOT

GATEWAY_DIR = PROJECT_ROOT / "deploy" / "gateway"
#: The files used unchanged everywhere; ``site.conf`` is per environment.
SHARED_FILES = ("nginx.conf", "http.conf", "locations.conf")
DEFAULT_PORT = 8000
#: Where the gateway serves the storefront (``locations.conf``).
STOREFRONT_PATH = "/shop/"
#: An address nothing listens on (port 1 needs root to listen on): the upstream of an app
#: that is not running, so nginx still starts and answers its paths with the 502 problem.
CLOSED_ADDRESS = "127.0.0.1:1"
INSTALL_HINT = "install nginx (e.g. `apt-get install nginx`) to get the gateway"


def local_port() -> int:
    """The gateway's port for ``make run``: ``SHOP_GATEWAY_PORT``, default 8000."""
    raw = os.environ.get("SHOP_GATEWAY_PORT", "")
    try:
        return int(raw) if raw else DEFAULT_PORT
    except ValueError as exc:
        raise ValueError(f"SHOP_GATEWAY_PORT must be an integer, got {raw!r}") from exc


def nginx_binary() -> str | None:
    """The nginx executable: on ``PATH``, or Debian's ``/usr/sbin/nginx`` (not on a user's PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    sbin = Path("/usr/sbin/nginx")
    return str(sbin) if os.access(sbin, os.X_OK) else None


def upstream_names() -> list[str]:
    """The upstreams ``locations.conf`` proxies to, in order of first use."""
    text = (GATEWAY_DIR / "locations.conf").read_text()
    return list(dict.fromkeys(re.findall(r"^\s*proxy_pass http://([a-z_]+)", text, re.M)))


def site_config(listen: str, upstreams: Mapping[str, str]) -> str:
    """A ``site.conf``: every upstream ``locations.conf`` uses, and the server.

    ``upstreams`` maps the running apps to ``host:port``; one not given (the
    storefront when only the services run) points at :data:`CLOSED_ADDRESS`,
    since nginx refuses to start with an undefined upstream.
    """
    names = upstream_names()
    unknown = set(upstreams) - set(names)
    if unknown:
        raise ValueError(f"no route of locations.conf uses {sorted(unknown)}")
    blocks = [
        f"upstream {name} {{\n    server {upstreams.get(name, CLOSED_ADDRESS)};\n"
        "    keepalive 16;\n}\n"
        for name in names
    ]
    server = f"server {{\n    listen {listen};\n    include locations.conf;\n}}\n"
    return "".join(blocks) + server


def prepare(prefix: Path, listen: str, upstreams: Mapping[str, str]) -> Path:
    """Lay out a runnable configuration under ``prefix``; return the main file's path."""
    conf = prefix / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    for name in SHARED_FILES:
        shutil.copyfile(GATEWAY_DIR / name, conf / name)
    (conf / "site.conf").write_text(site_config(listen, upstreams))
    # nginx started as root runs its workers as `nobody`: they must reach the temp dirs.
    prefix.chmod(0o755)
    return conf / "nginx.conf"


@dataclass
class Gateway:
    """nginx in front of the services at ``upstreams`` (``name → host:port``), on ``port``."""

    port: int
    upstreams: dict[str, str]
    log: IO[bytes] | int | None = subprocess.DEVNULL
    prefix: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="shop-gateway-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the gateway."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The nginx command line (the one Compose and Kubernetes run, with a local prefix)."""
        binary = nginx_binary()
        if binary is None:
            raise FileNotFoundError(f"nginx not found: {INSTALL_HINT}")
        main = prepare(self.prefix, f"127.0.0.1:{self.port}", self.upstreams)
        return [binary, "-p", f"{self.prefix}/", "-e", "stderr", "-c", str(main),
                "-g", "daemon off;"]  # fmt: skip

    def start(self) -> Gateway:
        """Start nginx in the foreground, in its own process group."""
        self.process = spawn(self.command(), stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout_s: float = 15.0) -> Gateway:
        """Block until the gateway's ``/healthz`` answers 200."""
        wait_until_ok(self.url + "/healthz", self.process, timeout_s, "the gateway (nginx)")
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop nginx (SIGQUIT: finish requests, then exit; SIGKILL if it lingers)."""
        stop_group(self.process, signal.SIGQUIT, timeout_s)
        shutil.rmtree(self.prefix, ignore_errors=True)


def start_local(
    upstreams: Mapping[str, str], log: IO[bytes] | int | None
) -> tuple[Gateway | None, str]:
    """``make run``'s gateway on :func:`local_port`, or ``None`` and why not.

    A missing nginx or a port in use is not an error: the services are still
    served on their own ports, and the message says what to do.
    """
    if nginx_binary() is None:
        return None, f"no gateway: nginx is not installed; {INSTALL_HINT}"
    gateway = Gateway(local_port(), dict(upstreams), log=log).start()
    try:
        gateway.wait_ready()
    except (RuntimeError, TimeoutError) as exc:
        gateway.stop()
        return None, f"no gateway: nginx did not start on port {gateway.port} ({exc})"
    return gateway, f"gateway   ready at {gateway.url} (the public API, /internal/* closed)"
