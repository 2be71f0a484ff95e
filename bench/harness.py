"""The shared parts of the benchmarks: knobs, the database, the services under gunicorn,
the seeded dataset and the machine's facts.

Every bench (``bench/run.py`` and its phases, ``bench/batching_bench.py``,
``bench/tracing_bench.py``) imports these instead of importing one another.
"""

from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402 (after the path fix above)
import requests  # noqa: E402
from rich.console import Console  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench import profiling  # noqa: E402
from bench.cpu import CpuMeter  # noqa: E402
from bench.loadgen import Buyer  # noqa: E402
from bench.memory import RssSampler  # noqa: E402
from devstack.postgres import scratch_database, throwaway_server  # noqa: E402
from devstack.processes import ServiceProcess, free_port  # noqa: E402
from shopkit.migrations import upgrade  # noqa: E402
from shopkit.registry import app, packages  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
PROFILE_CONFIG = BENCH_DIR / "gunicorn_profile.py"
PGBENCH_SCRIPT = BENCH_DIR / "pgbench_sale.sql"
ADMIN = ("bench-admin", "bench-admin-password")
BUYER_PASSWORD = "bench-buyer-password"
BUYER_FUNDS = Decimal("1000000.00")
MAX_TOP_UP = Decimal("100000.00")
PRODUCT_STOCK = 1_000_000
PACKAGES = packages()  # the services of shopkit.registry: name → package
SERVICES = tuple(PACKAGES)  # customers, inventory, sales, reviews
SAGA_SERVICES = ("customers", "inventory", "sales")


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class Knobs:
    """Every setting of a run; each comes from an environment variable."""

    duration_s: float = field(default_factory=lambda: env_float("BENCH_DURATION_S", 30))
    warmup_s: float = field(default_factory=lambda: env_float("BENCH_WARMUP_S", 3))
    monolith_s: float = field(default_factory=lambda: env_float("BENCH_MONOLITH_S", 20))
    monolith_full_s: float = field(default_factory=lambda: env_float("BENCH_MONOLITH_FULL_S", 15))
    latency_s: float = field(default_factory=lambda: env_float("BENCH_LATENCY_S", 8))
    lines_s: float = field(default_factory=lambda: env_float("BENCH_LINES_S", 20))
    order_lines: int = field(default_factory=lambda: env_int("BENCH_ORDER_LINES", 3))
    pgbench_s: float = field(default_factory=lambda: env_float("BENCH_PGBENCH_S", 15))
    profile_s: float = field(default_factory=lambda: env_float("BENCH_PROFILE_S", 10))
    replay_s: float = field(default_factory=lambda: env_float("BENCH_REPLAY_S", 60))
    replay_warmup_s: float = field(default_factory=lambda: env_float("BENCH_REPLAY_WARMUP_S", 10))
    replay_profile_s: float = field(default_factory=lambda: env_float("BENCH_REPLAY_PROFILE_S", 10))
    replay_concurrency: int = field(default_factory=lambda: env_int("BENCH_REPLAY_CONCURRENCY", 8))
    replay_customers: int = field(default_factory=lambda: env_int("BENCH_REPLAY_CUSTOMERS", 200))
    replay_products: int = field(default_factory=lambda: env_int("BENCH_REPLAY_PRODUCTS", 100))
    buyers: int = field(default_factory=lambda: env_int("BENCH_BUYERS", 16))
    products: int = field(default_factory=lambda: env_int("BENCH_PRODUCTS", 100))
    seed: int = field(default_factory=lambda: env_int("BENCH_SEED", 42))
    workers: int = field(default_factory=lambda: env_int("WEB_CONCURRENCY", 2))
    threads: int = field(default_factory=lambda: env_int("GUNICORN_THREADS", 4))
    #: The services run as deployed (``shopkit.registry``: sales 1 x 32) unless
    #: ``WEB_CONCURRENCY`` or ``GUNICORN_THREADS`` asks for one layout for all.
    deployed_layout: bool = field(
        default_factory=lambda: (
            not (os.environ.get("WEB_CONCURRENCY") or os.environ.get("GUNICORN_THREADS"))
        )
    )
    durable: bool = field(default_factory=lambda: os.environ.get("BENCH_DURABLE", "1") != "0")
    log_level: str = field(default_factory=lambda: os.environ.get("BENCH_LOG_LEVEL", "INFO"))
    sample_s: float = field(default_factory=lambda: env_float("BENCH_SAMPLE_S", 0.5))
    profile_clock: str = field(
        default_factory=lambda: os.environ.get("BENCH_PROFILE_CLOCK", "wall")
    )
    results: Path = field(
        default_factory=lambda: Path(os.environ.get("BENCH_RESULTS_DIR") or BENCH_DIR / "results")
    )

    def as_dict(self) -> dict[str, Any]:
        """The knobs as JSON values."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


class BenchProcess(ServiceProcess):
    """A :class:`ServiceProcess` under ``bench/gunicorn_profile.py`` (or any WSGI app)."""

    app: str | None = None

    def command(self) -> list[str]:
        """Shopkit's gunicorn command with the benchmark config (and app, if given)."""
        command = super().command()
        command[command.index("python:shopkit.gunicorn_conf")] = str(PROFILE_CONFIG)
        if self.app is not None:
            command[-1] = self.app
        return command


# --- database ----------------------------------------------------------------------------------


@contextmanager
def database(knobs: Knobs, console: Console) -> Iterator[str]:
    """A fresh database URL (embedded server in a temporary directory, or on DATABASE_URL),
    with every service's schema migrated."""
    external = os.environ.get("DATABASE_URL")
    if external:
        where = "DATABASE_URL's server"
    else:
        where = "embedded PostgreSQL" + ("" if knobs.durable else " (fsync off)")
    with (
        throwaway_server("shop-bench-", database_url=external, durable=knobs.durable) as (
            _,
            admin_url,
        ),
        scratch_database(admin_url, "shop_bench") as url,
    ):
        console.print(f"database: {where}, database {make_url(url).database}")
        for package in packages().values():
            upgrade(package, url)
        yield url


def _scalar(url: str, query: str) -> Any:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(query)).scalar()
    finally:
        engine.dispose()


def postmaster_pid(url: str) -> int | None:
    """The PostgreSQL postmaster's pid when the server runs on this machine (else ``None``)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:  # the backend must live while we look at it
            backend = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
            parent = psutil.Process(backend).ppid()
            return parent if "postgres" in psutil.Process(parent).name() else None
    except (psutil.Error, ValueError, TypeError):
        return None
    finally:
        engine.dispose()


def _libpq_env(url: str) -> dict[str, str]:
    """``PGHOST``... for pgbench, from a SQLAlchemy URL (unix socket or TCP)."""
    parsed = make_url(url)
    env = {"PGDATABASE": parsed.database or "", "PGUSER": parsed.username or "postgres"}
    host = parsed.host or parsed.query.get("host")
    if isinstance(host, tuple):
        host = host[0]
    if host:
        env["PGHOST"] = str(host)
    if parsed.port:
        env["PGPORT"] = str(parsed.port)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return env


# --- the stack ---------------------------------------------------------------------------------


class Stack:
    """The four services on free ports, their logs and their profile directories."""

    def __init__(self, url: str, knobs: Knobs, profile_root: Path, log_dir: Path) -> None:
        self.url = url
        self.knobs = knobs
        self.profile_root = profile_root
        self.log_dir = log_dir
        self.ports = {name: free_port() for name in SERVICES}
        self.urls = {name: f"http://127.0.0.1:{port}" for name, port in self.ports.items()}
        self.env = {
            "DATABASE_URL": url,
            "ADMIN_USERNAME": ADMIN[0],
            "ADMIN_PASSWORD": ADMIN[1],
            "SERVICE_CLIENT_SECRET": "bench-service-secret",
            "ACCESS_TOKEN_TTL": "7200",  # buyer tokens outlive any run
            "LOG_LEVEL": knobs.log_level,
            **{f"{name.upper()}_URL": value for name, value in self.urls.items()},
        }
        self.processes: dict[str, BenchProcess] = {}
        self._logs: list[IO[bytes]] = []

    def _open_log(self, name: str) -> IO[bytes]:
        handle = (self.log_dir / f"{name}.log").open("ab")
        self._logs.append(handle)
        return handle

    def _process(
        self,
        name: str,
        extra_env: dict[str, str] | None,
        threads: int | None,
        workers: int | None = None,
    ) -> BenchProcess:
        as_deployed = self.knobs.deployed_layout and threads is None and workers is None
        env = {
            **self.env,
            **(app(name).layout_env() if as_deployed else {}),
            "SHOP_PROFILE_DIR": str(profiling.directory(self.profile_root, name)),
            "SHOP_PROFILE_NAME": name,
            "SHOP_PROFILE_CLOCK": self.knobs.profile_clock,
            **(extra_env or {}),
        }
        process = BenchProcess(
            name,
            self.ports[name],
            env=env,
            workers=workers or self.knobs.workers,
            threads=threads or self.knobs.threads,
            log=self._open_log(name),
        )
        self.processes[name] = process.start()  # type: ignore[assignment]
        return process

    def start(self) -> None:
        """Start every service and wait until each is ready."""
        for name in SERVICES:
            self._process(name, None, None)
        for process in self.processes.values():
            process.wait_ready(90)

    def start_service(
        self,
        name: str,
        *,
        extra_env: dict[str, str] | None = None,
        threads: int | None = None,
        workers: int | None = None,
    ) -> BenchProcess:
        """(Re)start one service with ``extra_env``, ``threads`` and ``workers``; wait until it
        is ready."""
        process = self._process(name, extra_env, threads, workers)
        process.wait_ready(90)
        return process

    def start_monolith(self, app: str, log_name: str) -> BenchProcess:
        """A single-app baseline (``app``, a gunicorn app spec) under the same settings."""
        process = BenchProcess(
            "sales",  # any known service: only the command's app is replaced
            free_port(),
            env={
                "DATABASE_URL": self.url,
                "CUSTOMERS_URL": self.urls["customers"],
                "ACCESS_TOKEN_TTL": self.env["ACCESS_TOKEN_TTL"],  # accept the buyers' tokens
                "LOG_LEVEL": self.knobs.log_level,
            },
            workers=self.knobs.workers,
            threads=self.knobs.threads,
            log=self._open_log(log_name),
        )
        process.app = app
        process.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.process is not None and process.process.poll() is not None:
                raise RuntimeError(f"{app} exited; see bench/results/logs/{log_name}.log")
            with suppress(requests.RequestException):
                # 401: the route is there and wants a token (and the JWKS is reachable later)
                if requests.post(process.url + "/sales", timeout=1).status_code == 401:
                    return process
            time.sleep(0.1)
        raise TimeoutError(f"{app} did not answer in 60 s")

    def master_pids(self) -> dict[str, int]:
        """Gunicorn master pid of each service."""
        return {
            name: process.process.pid
            for name, process in self.processes.items()
            if process.process is not None
        }

    def stop(self) -> None:
        """Stop every service gracefully (workers dump pending profiles) and close the logs."""
        for process in self.processes.values():
            process.stop(timeout_s=10)
        for handle in self._logs:
            handle.close()


# --- seeding -----------------------------------------------------------------------------------


def login(customers_url: str, username: str, password: str) -> dict[str, Any]:
    response = requests.post(
        customers_url + "/auth/login",
        json={"username": username, "password": password},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def post(url: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(
        url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=120
    )
    if response.status_code >= 400:
        raise RuntimeError(f"POST {url} answered {response.status_code}: {response.text[:300]}")
    return response.json()  # type: ignore[no-any-return]


@dataclass
class Dataset:
    """What the saga and baselines buy: buyers (with tokens and ids) and products."""

    buyers: list[Buyer]
    customer_ids: list[int]
    product_ids: list[int]
    prices: list[Decimal]


def seed(stack: Stack, knobs: Knobs) -> Dataset:
    """Buyers with ample funds, products with ample stock, each buyer logged in once."""
    rng = random.Random(knobs.seed)
    admin = login(stack.urls["customers"], *ADMIN)["access_token"]
    usernames = [f"bench-buyer-{i:03d}" for i in range(knobs.buyers)]
    created = post(
        stack.urls["customers"] + "/customers/batch",
        admin,
        {
            "customers": [
                {
                    "username": name,
                    "password": BUYER_PASSWORD,
                    "full_name": f"Bench Buyer {i}",
                    "email": f"{name}@bench.example",
                    "age": 30 + i % 40,
                    "address": f"{i} Benchmark Road",
                    "gender": "prefer_not_to_say",
                    "marital_status": "single",
                }
                for i, name in enumerate(usernames)
            ]
        },
    )
    ids = {item["username"]: int(item["id"]) for item in created["items"]}
    charges = [
        {"username": name, "amount": str(MAX_TOP_UP)}
        for name in usernames
        for _ in range(int(BUYER_FUNDS / MAX_TOP_UP))
    ]
    for offset in range(0, len(charges), 1000):
        post(
            stack.urls["customers"] + "/wallets/charges/batch",
            admin,
            {"charges": charges[offset : offset + 1000]},
        )
    prices = [Decimal(rng.randint(100, 5000)) / 100 for _ in range(knobs.products)]
    products = post(
        stack.urls["inventory"] + "/products/batch",
        admin,
        {
            "products": [
                {
                    "name": f"Bench product {i:03d}",
                    "category": ("food", "clothes", "accessories", "electronics")[i % 4],
                    "price": f"{price:.2f}",
                    "description": "A product of the benchmark's fixed catalogue.",
                    "stock": PRODUCT_STOCK,
                }
                for i, price in enumerate(prices)
            ]
        },
    )
    product_ids = [int(item["id"]) for item in products["items"]]
    buyers = [
        Buyer(name, login(stack.urls["customers"], name, BUYER_PASSWORD)["access_token"])
        for name in usernames
    ]
    return Dataset(buyers, [ids[name] for name in usernames], product_ids, prices)


def machine_info(url: str) -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgres": _scalar(url, "SHOW server_version"),
        "git_commit": commit,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- report ------------------------------------------------------------------------------------


class BenchRun(Protocol):
    """What a phase module needs of the run it belongs to (:class:`bench.phases.Bench`)."""

    knobs: Knobs
    console: Console
    stack: Stack
    dataset: Dataset | None
    cpu: CpuMeter
    rss: RssSampler
    summary: dict[str, Any]
