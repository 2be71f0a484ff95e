"""``make bench``: the saga under load against single-app baselines and pgbench, with profiles.

Run from the repository root::

    .venv/bin/python bench/run.py            # what `make bench` runs (~6.5 minutes)
    BENCH_DURATION_S=60 BENCH_REPLAY_S=120 .venv/bin/python bench/run.py

What it does, on free ports, with every knob an environment variable
(``bench/README.md`` has the method and what each figure means):

1. starts PostgreSQL (the embedded one in a temporary directory, or a fresh
   database on ``DATABASE_URL``'s server), migrates the four services and starts
   them under gunicorn with the shared settings (``bench/gunicorn_profile.py`` is
   ``shopkit.gunicorn_conf`` plus cProfile hooks that stay off until switched on);
2. seeds a fixed dataset through the bulk endpoints (buyers with ample funds,
   products with ample stock) and logs every buyer in once;
3. **saga**: ``BENCH_BUYERS`` closed-loop buyers ``POST /sales`` (one-line orders)
   for ``BENCH_DURATION_S`` after a warm-up, then one buyer alone (latency
   unloaded); then the same with orders of ``BENCH_ORDER_LINES`` (3) lines for
   ``BENCH_LINES_S``: CPU per 3-line order against CPU per 1-line order is what
   reserving every line in one inventory call saves;
4. **single app** (:mod:`bench.monolith`): the same buyers, tokens and load
   generator against one Flask route doing the sale in one transaction, then the
   same transaction behind the services' own stack; same gunicorn settings;
5. **pgbench**: the same transaction (``bench/pgbench_sale.sql``) from C clients;
6. **replay**: ``python -m seeder populate``, a ``BENCH_REPLAY_WARMUP_S`` warm-up
   replay, then ``python -m seeder replay`` (all four services, reviews included)
   for ``BENCH_REPLAY_S`` while RSS is sampled;
7. the peaks are frozen, then the **profiled windows** (the saga, then a short
   replay) with cProfile on, so that the profiler's own memory is never counted;
8. **tracing** (bench/tracing_bench.py): CPU per sale with tracing off, every span
   exported, and sampled, in interleaved windows (``BENCH_TRACING_S=0`` skips it);
9. **audit**: ``python -m seeder audit`` and the invariant queries of
   ``tests/support/invariants.py``;
10. writes ``bench/results/summary.json`` (+ ``.prof`` files, top-25 listings,
    ``memory-replay.png``, ``memory-run.png``, ``memory-samples.csv``, service
    logs) and prints a table.

CPU time per sale is measured for every process group (each service, the
database, the client) over exactly the measured windows: on a shared or small
machine it is a steadier figure than sales per second.

Exit status: 0 when the run completed and the audit passed, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402 (after the path fix above)
import requests  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench import batching_bench, monolith, profiling  # noqa: E402
from bench.cpu import CpuMeter, tree  # noqa: E402
from bench.loadgen import Buyer, LoadResult, run_load  # noqa: E402
from bench.memory import RssSampler, floor  # noqa: E402
from devstack.postgres import scratch_database, throwaway_server  # noqa: E402
from devstack.processes import ServiceProcess, free_port  # noqa: E402
from shopkit.migrations import upgrade  # noqa: E402
from shopkit.registry import packages  # noqa: E402

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

TARGETS = {
    "saga_vs_monolith": 0.5,  # saga sales/s >= 0.5 x the single app's
    "saga_p99_ms": 100.0,
    "peak_rss_mib": 100.0,
    "rss_growth_pct": 10.0,
    "cpu_lines_vs_one_line": 1.5,  # CPU per 3-line order <= 1.5 x CPU per 1-line order
}


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class Knobs:
    """Every setting of a run; each comes from an environment variable."""

    duration_s: float = field(default_factory=lambda: _env_float("BENCH_DURATION_S", 30))
    warmup_s: float = field(default_factory=lambda: _env_float("BENCH_WARMUP_S", 3))
    monolith_s: float = field(default_factory=lambda: _env_float("BENCH_MONOLITH_S", 20))
    monolith_full_s: float = field(default_factory=lambda: _env_float("BENCH_MONOLITH_FULL_S", 15))
    latency_s: float = field(default_factory=lambda: _env_float("BENCH_LATENCY_S", 8))
    lines_s: float = field(default_factory=lambda: _env_float("BENCH_LINES_S", 20))
    order_lines: int = field(default_factory=lambda: _env_int("BENCH_ORDER_LINES", 3))
    pgbench_s: float = field(default_factory=lambda: _env_float("BENCH_PGBENCH_S", 15))
    profile_s: float = field(default_factory=lambda: _env_float("BENCH_PROFILE_S", 10))
    replay_s: float = field(default_factory=lambda: _env_float("BENCH_REPLAY_S", 60))
    replay_warmup_s: float = field(default_factory=lambda: _env_float("BENCH_REPLAY_WARMUP_S", 10))
    replay_profile_s: float = field(
        default_factory=lambda: _env_float("BENCH_REPLAY_PROFILE_S", 10)
    )
    replay_concurrency: int = field(default_factory=lambda: _env_int("BENCH_REPLAY_CONCURRENCY", 8))
    replay_customers: int = field(default_factory=lambda: _env_int("BENCH_REPLAY_CUSTOMERS", 200))
    replay_products: int = field(default_factory=lambda: _env_int("BENCH_REPLAY_PRODUCTS", 100))
    buyers: int = field(default_factory=lambda: _env_int("BENCH_BUYERS", 16))
    products: int = field(default_factory=lambda: _env_int("BENCH_PRODUCTS", 100))
    seed: int = field(default_factory=lambda: _env_int("BENCH_SEED", 42))
    workers: int = field(default_factory=lambda: _env_int("WEB_CONCURRENCY", 2))
    threads: int = field(default_factory=lambda: _env_int("GUNICORN_THREADS", 4))
    durable: bool = field(default_factory=lambda: os.environ.get("BENCH_DURABLE", "1") != "0")
    log_level: str = field(default_factory=lambda: os.environ.get("BENCH_LOG_LEVEL", "INFO"))
    sample_s: float = field(default_factory=lambda: _env_float("BENCH_SAMPLE_S", 0.5))
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
    """A fresh database URL (embedded server in a temporary directory, or on DATABASE_URL)."""
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
        env = {
            **self.env,
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


def _login(customers_url: str, username: str, password: str) -> dict[str, Any]:
    response = requests.post(
        customers_url + "/auth/login",
        json={"username": username, "password": password},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def _post(url: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
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
    admin = _login(stack.urls["customers"], *ADMIN)["access_token"]
    usernames = [f"bench-buyer-{i:03d}" for i in range(knobs.buyers)]
    created = _post(
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
        _post(
            stack.urls["customers"] + "/wallets/charges/batch",
            admin,
            {"charges": charges[offset : offset + 1000]},
        )
    prices = [Decimal(rng.randint(100, 5000)) / 100 for _ in range(knobs.products)]
    products = _post(
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
        Buyer(name, _login(stack.urls["customers"], name, BUYER_PASSWORD)["access_token"])
        for name in usernames
    ]
    return Dataset(buyers, [ids[name] for name in usernames], product_ids, prices)


# --- phases ------------------------------------------------------------------------------------


def pgbench(url: str, knobs: Knobs, dataset: Dataset, log_dir: Path) -> dict[str, Any]:
    """The baseline's transaction in C: ``pgbench`` with ``bench/pgbench_sale.sql``."""
    from pgserver._commands import POSTGRES_BIN_PATH  # noqa: PLC0415

    binary = shutil.which("pgbench", path=str(POSTGRES_BIN_PATH)) or "pgbench"
    command = [
        binary,
        "-n",  # no vacuum of pgbench's own tables (we have none)
        "-f",
        str(PGBENCH_SCRIPT),
        "-c",
        str(knobs.buyers),
        "-j",
        str(min(knobs.buyers, os.cpu_count() or 1)),
        "-T",
        str(max(1, round(knobs.pgbench_s))),
        "-D",
        f"products={len(dataset.product_ids)}",
        "-D",
        f"wallets={len(dataset.customer_ids)}",
    ]
    completed = subprocess.run(
        command,
        env={**os.environ, **_libpq_env(url)},
        capture_output=True,
        text=True,
        check=False,
        timeout=knobs.pgbench_s + 60,
    )
    (log_dir / "pgbench.log").write_text(
        " ".join(command) + "\n\n" + completed.stdout + completed.stderr
    )
    if completed.returncode != 0:
        raise RuntimeError(f"pgbench failed ({completed.returncode}): {completed.stderr[-500:]}")
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", completed.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", completed.stdout)
    done = re.search(r"number of transactions actually processed: (\d+)", completed.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", completed.stdout)
    return {
        "clients": knobs.buyers,
        "duration_s": max(1, round(knobs.pgbench_s)),
        "per_s": float(tps.group(1)) if tps else None,
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "transactions": int(done.group(1)) if done else None,
        "failed": int(failed.group(1)) if failed else 0,
    }


def _seeder(stack: Stack, args: list[str], log: IO[str], timeout_s: float) -> int:
    """Run ``python -m seeder <args>`` against the stack; its output goes to ``log``."""
    env = {
        **os.environ,
        **{f"{name.upper()}_URL": value for name, value in stack.urls.items()},
        "ADMIN_USERNAME": ADMIN[0],
        "ADMIN_PASSWORD": ADMIN[1],
        "COLUMNS": "120",
    }
    log.write(f"\n$ python -m seeder {' '.join(args)}\n")
    log.flush()
    try:
        return subprocess.run(
            [sys.executable, "-m", "seeder", *args],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=timeout_s,
        ).returncode
    except subprocess.TimeoutExpired:
        log.write(f"\n(timed out after {timeout_s:.0f} s)\n")
        return 124


def audit(url: str, stack: Stack, log: IO[str], use_seeder: bool) -> dict[str, Any]:
    """``seeder audit`` (through the APIs) and the direct invariant queries (in the database)."""
    from tests.support.invariants import check_invariants  # noqa: PLC0415

    report = check_invariants(url)
    result: dict[str, Any] = {
        "invariants_ok": report.ok,
        "violations": report.violations[:20],
        "sales_completed": report.completed,
        "sales_failed": report.failed,
        "sales_pending": report.pending,
        "money_in_sales": report.money_in_sales,
        "money_debited": report.money_debited,
    }
    if use_seeder:
        code = _seeder(stack, ["audit", "--pending-after", "30"], log, timeout_s=180)
        result["seeder_audit_exit"] = code
        result["seeder_audit_ok"] = code == 0
    result["ok"] = report.ok and result.get("seeder_audit_ok", True)
    return result


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


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value}{unit}"


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """The figures as one table, then the targets."""
    table = Table(title="Shop benchmark", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    ratios = summary["ratios"]

    def load_rows(label: str, figures: dict[str, Any] | None) -> list[tuple[str, str]]:
        if not figures:
            return []
        latency = " / ".join(_fmt(figures.get(k)) for k in ("p50_ms", "p95_ms", "p99_ms"))
        return [
            (f"{label}: sales/s", _fmt(figures.get("per_s"))),
            (f"{label}: p50 / p95 / p99 ms", latency),
            (f"{label}: errors", _fmt(figures.get("errors"))),
        ]

    buyers = summary["saga"]["buyers"]
    lines = (summary.get("saga_lines") or {}).get("lines", 3)
    rows = [
        *load_rows(f"saga, {buyers} buyers", summary["saga"]),
        *load_rows("saga, 1 buyer", summary.get("saga_unloaded")),
        *load_rows(f"saga {lines}-line orders, {buyers} buyers", summary.get("saga_lines")),
        *load_rows(f"saga {lines}-line orders, 1 buyer", summary.get("saga_lines_unloaded")),
        *load_rows(f"single app, {buyers} buyers", summary.get("monolith")),
        *load_rows("single app, 1 buyer", summary.get("monolith_unloaded")),
        *load_rows(f"single app on the services' stack, {buyers}", summary.get("monolith_full")),
        ("pgbench: sales/s", _fmt(summary.get("pgbench_sales_per_s"))),
        ("saga / single app", _fmt(ratios.get("saga_vs_monolith"), digits=3)),
        (
            "saga / single app on the services' stack",
            _fmt(ratios.get("saga_vs_monolith_full"), digits=3),
        ),
        (
            "single app on the stack / single app",
            _fmt(ratios.get("monolith_full_vs_monolith"), digits=3),
        ),
        ("saga / pgbench", _fmt(ratios.get("saga_vs_pgbench"), digits=3)),
        ("single app / pgbench", _fmt(ratios.get("monolith_vs_pgbench"), digits=3)),
    ]
    for name, key in (
        ("saga", "saga"),
        (f"saga, {lines}-line order", "saga_lines"),
        ("single app", "monolith"),
        ("single app, stack", "monolith_full"),
        ("pgbench", "pgbench"),
    ):
        cpu = (summary.get(key) or {}).get("cpu_ms_per_sale") or {}
        if cpu:
            parts = ", ".join(f"{k} {v:.1f}" for k, v in cpu.items() if k != "total" and v >= 0.05)
            rows.append((f"CPU ms per sale, {name}", f"{cpu['total']:.1f} ({parts})"))
    tracing = summary.get("tracing") or {}
    per_sale = tracing.get("cpu_ms_per_sale") or {}
    for mode, label in (("on", "every span"), ("sampled", "sampled")):
        if f"overhead_{mode}_pct" in tracing:
            rows.append(
                (
                    f"tracing {label}: CPU per sale vs off",
                    f"{tracing[f'overhead_{mode}_pct']:+.1f}% ({per_sale[mode]:.1f} / "
                    f"{per_sale['off']:.1f} ms)",
                )
            )
    if ratios.get("cpu_lines_vs_one_line") is not None:
        rows.append(
            (
                f"CPU per {lines}-line order / per 1-line order",
                _fmt(ratios["cpu_lines_vs_one_line"], digits=2),
            )
        )
    for service, peak in summary["peak_rss_mib"].items():
        rows.append((f"peak RSS {service} (MiB, worst worker)", _fmt(peak)))
    rows += [
        ("RSS growth over the replay (worst worker)", _fmt(summary["rss_growth_pct"], " %", 2)),
        (
            "RSS growth saga start -> replay end (worst)",
            _fmt(summary.get("rss_growth_run_pct"), " %", 2),
        ),
        ("replay", summary["replay"].get("note", "")),
        ("audit", "OK" if summary.get("audit_ok") else "FAILED"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    targets = Table(title="targets", title_justify="left")
    for column in ("target", "value", "met"):
        targets.add_column(column)
    for name, item in summary["targets"].items():
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: "—"}[item["met"]]
        targets.add_row(f"{name} {item['goal']}", _fmt(item["value"], digits=2), met)
    console.print(targets)


def _targets(summary: dict[str, Any]) -> dict[str, Any]:
    ratio = summary["ratios"].get("saga_vs_monolith")
    peaks = [v for k, v in summary["peak_rss_mib"].items() if k in SERVICES]
    worst = max(peaks) if peaks else None
    growth = summary["rss_growth_pct"]

    def check(value: float | None, goal: float, *, at_least: bool) -> bool | None:
        if value is None:
            return None
        return value >= goal if at_least else value <= goal

    lines_ratio = summary["ratios"].get("cpu_lines_vs_one_line")
    lines = (summary.get("saga_lines") or {}).get("lines", 3)
    tracing = summary.get("tracing") or {}
    return {
        "cpu_lines_vs_one_line": {
            "goal": f"<= 1.5 (CPU per {lines}-line order / per 1-line order)",
            "value": lines_ratio,
            "met": check(lines_ratio, TARGETS["cpu_lines_vs_one_line"], at_least=False),
        },
        "saga_vs_monolith": {
            "goal": ">= 0.5",
            "value": ratio,
            "met": check(ratio, TARGETS["saga_vs_monolith"], at_least=True),
        },
        "saga_p99_ms": {
            "goal": f"<= 100 at {summary['saga']['buyers']} buyers",
            "value": summary["saga_p99_ms"],
            "met": check(summary["saga_p99_ms"], TARGETS["saga_p99_ms"], at_least=False),
        },
        "peak_rss_mib": {
            "goal": "<= 100 every service worker",
            "value": worst,
            "met": check(worst, TARGETS["peak_rss_mib"], at_least=False),
        },
        "rss_growth_pct": {
            "goal": "< 10 over the replay",
            "value": growth,
            "met": None if growth is None else growth < TARGETS["rss_growth_pct"],
        },
        "tracing_overhead_pct": {
            "goal": "< 15 (CPU per sale, every span exported, against tracing off)",
            "value": tracing.get("overhead_on_pct"),
            "met": tracing.get("met"),
        },
        "audit": {"goal": "OK", "value": None, "met": summary["audit_ok"]},
    }


# --- the run -----------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


class Bench:
    """One benchmark run: the stack, the samplers and the summary it fills phase by phase."""

    def __init__(self, knobs: Knobs, console: Console, url: str, profile_root: Path) -> None:
        self.knobs = knobs
        self.console = console
        self.url = url
        self.results = knobs.results
        self.log_dir = knobs.results / "logs"
        self.profile_root = profile_root
        self.stack = Stack(url, knobs, profile_root, self.log_dir)
        self.rss = RssSampler(interval_s=knobs.sample_s)
        self.cpu = CpuMeter(interval_s=knobs.sample_s)
        self.seeder_log = (self.log_dir / "seeder.log").open("w")
        self.summary: dict[str, Any] = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "knobs": knobs.as_dict(),
            "machine": machine_info(url),
        }
        self.dataset: Dataset | None = None
        self.seeder_ok = False

    # --- setup and teardown -----------------------------------------------------------------

    def start(self, started: float) -> None:
        """Start the services and the samplers; seed the fixed dataset."""
        self.stack.start()
        self.console.print(f"services ready after {time.monotonic() - started:.1f} s")
        for service, pid in self.stack.master_pids().items():
            self.rss.watch(service, pid)
            self.cpu.watch(service, lambda pid=pid: tree(pid))  # type: ignore[misc]
        postmaster = postmaster_pid(self.url)
        if postmaster is not None:
            self.cpu.watch("postgres", lambda: tree(postmaster))
        self.cpu.watch("client", lambda: tree(os.getpid()))
        self.rss.start()
        self.cpu.start()
        self.dataset = seed(self.stack, self.knobs)
        self.console.print(
            f"seeded {len(self.dataset.buyers)} buyers with {BUYER_FUNDS:,} each, "
            f"{len(self.dataset.product_ids)} products with {PRODUCT_STOCK:,} each "
            f"({time.monotonic() - started:.1f} s)"
        )

    def stop(self) -> None:
        """Stop samplers and services (high-water marks are read first)."""
        self.rss.stop()
        self.cpu.stop()
        self.stack.stop()
        self.seeder_log.close()

    # --- phases -----------------------------------------------------------------------------

    def _load(self, name: str, url: str, product_ids: list[int], **kwargs: Any) -> LoadResult:
        assert self.dataset is not None
        phase = name.split(maxsplit=1)[0]
        self.rss.begin(phase)
        try:
            result = run_load(
                name,
                url,
                self.dataset.buyers,
                product_ids,
                on_window=(lambda: self.cpu.begin(phase), lambda: self.cpu.end(phase)),
                **kwargs,
            )
        finally:
            self.rss.end(phase)
        s = result.summary()
        s["cpu_ms_per_sale"] = CpuMeter.per_sale(self.cpu.results.get(phase, {}), result.completed)
        self.console.print(
            f"  {name}: [bold]{s['per_s']:.1f}/s[/], {s['completed']:,} completed, p50 "
            f"{s['p50_ms']} ms, p95 {s['p95_ms']} ms, p99 {s['p99_ms']} ms, {s['errors']} errors "
            f"{s['error_kinds'] or ''}\n    CPU ms per sale: {s['cpu_ms_per_sale']}"
        )
        return result

    def tracing(self) -> None:
        """CPU per sale with tracing off, on and sampled (bench/tracing_bench.py), if asked."""
        if _env_float("BENCH_TRACING_S", 10) <= 0:
            return
        from bench import tracing_bench  # noqa: PLC0415 (it imports this module)

        summary = tracing_bench.compare(
            self.stack, self.knobs, self.dataset, self.cpu, self.console
        )
        tracing_bench.report(summary, self.console)
        self.summary["tracing"] = summary

    def saga(self) -> None:
        """The measured saga window (no profiler)."""
        assert self.dataset is not None
        result = self._load(
            "saga",
            self.stack.urls["sales"] + "/sales",
            self.dataset.product_ids,
            duration_s=self.knobs.duration_s,
            warmup_s=self.knobs.warmup_s,
            seed=self.knobs.seed,
        )
        self.summary["saga"] = result.summary()
        self.summary["saga"]["cpu_ms_per_sale"] = CpuMeter.per_sale(
            self.cpu.results["saga"], result.completed
        )

    def saga_lines(self) -> None:
        """Orders of ``BENCH_ORDER_LINES`` lines: the same buyers and window, then one buyer."""
        assert self.dataset is not None
        knobs = self.knobs
        if knobs.lines_s <= 0:
            return
        lines = min(knobs.order_lines, len(self.dataset.product_ids))
        url = self.stack.urls["sales"] + "/sales"
        result = self._load(
            "saga-lines",
            url,
            self.dataset.product_ids,
            duration_s=knobs.lines_s,
            warmup_s=knobs.warmup_s,
            seed=knobs.seed + 4,
            lines=lines,
        )
        figures = result.summary()
        figures["lines"] = lines
        figures["cpu_ms_per_sale"] = CpuMeter.per_sale(
            self.cpu.results["saga-lines"], result.completed
        )
        self.summary["saga_lines"] = figures
        self.unloaded("saga-lines-unloaded", url, self.dataset.product_ids, lines=lines)

    def saga_profiled(self) -> None:
        """The same load for a shorter window with cProfile on in sales, inventory, customers."""
        assert self.dataset is not None
        if self.knobs.profile_s <= 0:
            return
        profiling.start(self.profile_root, SAGA_SERVICES)
        try:
            result = self._load(
                "saga-profiled (cProfile on, not a result)",
                self.stack.urls["sales"] + "/sales",
                self.dataset.product_ids,
                duration_s=self.knobs.profile_s,
                warmup_s=0.5,
                seed=self.knobs.seed + 1,
            )
        finally:
            done = profiling.stop(
                self.profile_root, dict.fromkeys(SAGA_SERVICES, self.knobs.workers)
            )
        self.summary["profiles_saga"] = {
            "clock": self.knobs.profile_clock,
            "load": result.summary(),
            "workers_dumped": done,
            "files": self._merge_profiles("saga", SAGA_SERVICES),
        }

    def unloaded(self, name: str, url: str, product_ids: list[int], lines: int = 1) -> None:
        """One buyer alone: the latency of a purchase without queueing."""
        assert self.dataset is not None
        if self.knobs.latency_s <= 0:
            return
        result = run_load(
            name,
            url,
            self.dataset.buyers[:1],
            product_ids,
            duration_s=self.knobs.latency_s,
            warmup_s=1.0,
            seed=self.knobs.seed + 3,
            lines=lines,
        )
        s = result.summary()
        self.summary[name.replace("-", "_")] = s
        self.console.print(
            f"  {name}: {s['per_s']:.1f}/s, p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms, "
            f"p99 {s['p99_ms']} ms, {s['errors']} errors"
        )

    def monolith(self) -> None:
        """The single-app baselines: same buyers, tokens, load generator and gunicorn settings."""
        assert self.dataset is not None
        knobs = self.knobs
        if knobs.monolith_s <= 0 and knobs.monolith_full_s <= 0:
            return
        monolith.setup(
            self.url,
            [
                (i, f"Bench product {i - 1:03d}", price, PRODUCT_STOCK)
                for i, price in enumerate(self.dataset.prices, start=1)
            ],
            [(cid, BUYER_FUNDS) for cid in self.dataset.customer_ids],
        )
        product_ids = list(range(1, len(self.dataset.prices) + 1))
        variants = (
            ("monolith", "single app", "bench.monolith:create_app()", knobs.monolith_s),
            (
                "monolith_full",
                "single app on the services' stack",
                "bench.monolith:create_full_app()",
                knobs.monolith_full_s,
            ),
        )
        for key, label, app, duration_s in variants:
            if duration_s <= 0:
                continue
            single = self.stack.start_monolith(app, key)
            assert single.process is not None
            master = single.process.pid
            self.rss.watch(key, master)
            self.cpu.watch(key, lambda master=master: tree(master))  # type: ignore[misc]
            try:
                result = self._load(
                    f"{key} ({label})",
                    single.url + "/sales",
                    product_ids,
                    duration_s=duration_s,
                    warmup_s=knobs.warmup_s,
                    seed=knobs.seed,
                )
                if key == "monolith":
                    self.unloaded("monolith-unloaded", single.url + "/sales", product_ids)
            finally:
                self.rss.forget(key)
                single.stop()
            self.summary[key] = result.summary()
            self.summary[key]["cpu_ms_per_sale"] = CpuMeter.per_sale(
                self.cpu.results[key], result.completed
            )

    def pgbench(self) -> None:
        """The baseline's transaction from C clients."""
        assert self.dataset is not None
        if self.knobs.pgbench_s <= 0:
            return
        self.rss.begin("pgbench")
        self.cpu.begin("pgbench")
        try:
            result = pgbench(self.url, self.knobs, self.dataset, self.log_dir)
        finally:
            spent = self.cpu.end("pgbench")
            self.rss.end("pgbench")
        result["cpu_ms_per_sale"] = CpuMeter.per_sale(spent, result.get("transactions") or 0)
        self.summary["pgbench"] = result
        self.console.print(
            f"  pgbench: [bold]{result['per_s']:.1f}/s[/], latency avg {result['latency_avg_ms']} "
            f"ms, {result['failed']} failed\n    CPU ms per sale: {result['cpu_ms_per_sale']}"
        )

    def _seeder(self, args: list[str], timeout_s: float) -> int:
        return _seeder(self.stack, args, self.seeder_log, timeout_s)

    def _replay_args(self) -> list[str]:
        knobs = self.knobs
        return [
            "replay",
            *("--concurrency", str(knobs.replay_concurrency)),
            *("--seed", str(knobs.seed)),
            *("--report-every", "10"),
        ]

    def replay(self) -> None:
        """Seeder populate, then the replay during which memory is measured (no profiler)."""
        knobs = self.knobs
        replay: dict[str, Any] = {}
        self.summary["replay"] = replay
        if knobs.replay_s <= 0:
            replay["note"] = "skipped (BENCH_REPLAY_S=0)"
            return
        populate = [
            "populate",
            *("--customers", str(knobs.replay_customers)),
            *("--products", str(knobs.replay_products)),
            *("--seed", str(knobs.seed)),
        ]
        replay["populate_exit"] = self._seeder(populate, timeout_s=180)
        self.seeder_ok = replay["populate_exit"] == 0
        if self.seeder_ok and knobs.replay_warmup_s > 0:
            # Not measured: every worker (reviews' too, idle until now) serves its first
            # requests here, so first use is not mistaken for growth.
            self.rss.begin("replay-warmup")
            replay["warmup_exit"] = self._seeder(
                [*self._replay_args(), "--duration", str(knobs.replay_warmup_s)],
                timeout_s=knobs.replay_warmup_s + 180,
            )
            self.rss.end("replay-warmup")
        began = time.monotonic()
        self.rss.begin("replay")
        self.cpu.begin("replay")
        try:
            if self.seeder_ok:
                replay["exit"] = self._seeder(
                    [*self._replay_args(), "--duration", str(knobs.replay_s)],
                    timeout_s=knobs.replay_s + 180,
                )
                replay["note"] = (
                    f"seeder replay, {knobs.replay_concurrency} shoppers, exit {replay['exit']}"
                )
            else:  # the seeder is not usable: keep the memory window with the saga load
                assert self.dataset is not None
                fallback = run_load(
                    "replay",
                    self.stack.urls["sales"] + "/sales",
                    self.dataset.buyers,
                    self.dataset.product_ids,
                    duration_s=knobs.replay_s,
                    warmup_s=0,
                    seed=knobs.seed + 2,
                )
                replay["load"] = fallback.summary()
                replay["note"] = "seeder unavailable (see logs/seeder.log): saga load instead"
        finally:
            replay["cpu_s"] = {k: round(v, 1) for k, v in self.cpu.end("replay").items()}
            self.rss.end("replay")
        replay["duration_s"] = round(time.monotonic() - began, 1)
        self.console.print(f"  replay: {replay['note']} ({replay['duration_s']} s)")

    def replay_profiled(self) -> None:
        """A short seeder replay with cProfile on in all four services (reviews included)."""
        knobs = self.knobs
        if not self.seeder_ok or knobs.replay_profile_s <= 0:
            return
        profiling.start(self.profile_root, SERVICES)
        self.rss.begin("replay-profiled")
        try:
            code = self._seeder(
                [*self._replay_args(), "--duration", str(knobs.replay_profile_s)],
                timeout_s=knobs.replay_profile_s + 120,
            )
        finally:
            self.rss.end("replay-profiled")
            done = profiling.stop(self.profile_root, dict.fromkeys(SERVICES, knobs.workers))
        self.summary["profiles_replay"] = {
            "clock": knobs.profile_clock,
            "seeder_exit": code,
            "workers_dumped": done,
            "files": self._merge_profiles("replay", SERVICES),
        }
        self.console.print(f"  replay under cProfile: seeder exit {code}")

    def audit(self) -> None:
        """Invariants after the load, through the seeder and straight in the database."""
        time.sleep(1)
        result = audit(self.url, self.stack, self.seeder_log, use_seeder=self.seeder_ok)
        self.summary["audit"] = result
        self.summary["audit_ok"] = result["ok"]
        self.console.print(
            f"  audit: {'OK' if result['ok'] else 'FAILED'} "
            f"({result['sales_completed']:,} completed, {result['sales_failed']:,} failed, "
            f"{result['sales_pending']} pending sales)"
        )

    def _merge_profiles(self, label: str, services: tuple[str, ...]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for service in services:
            made = profiling.merge(self.profile_root, service, self.results, label, top=25)
            if made is None:
                self.console.print(f"  [yellow]no {label} profile from {service}[/]")
                continue
            prof, listing = made
            merged[service] = {
                "prof": prof.name,
                "top25": listing.name,
                "requests": profiling.request_count(prof),
            }
        return merged

    # --- figures ----------------------------------------------------------------------------

    def memory_figures(self) -> None:
        """Peak RSS, growth over the replay and over the run, plots and raw samples."""
        summary = self.summary
        peaks = self.rss.peak_by_worker()
        summary["peak_rss_mib"] = {
            s: round(max(peaks[s].values()), 1) for s in (*SERVICES, "monolith") if s in peaks
        }
        summary["peak_rss_by_worker_mib"] = {
            s: {str(pid): round(v, 1) for pid, v in workers.items()} for s, workers in peaks.items()
        }
        growth = self.rss.growth("replay")
        summary["rss_growth_by_worker"] = {
            s: {str(pid): g for pid, g in workers.items()} for s, workers in growth.items()
        }
        worst = [g["growth_pct"] for workers in growth.values() for g in workers.values()]
        summary["rss_growth_pct"] = max(worst) if worst else None
        summary["rss_growth_run_pct"] = _run_growth(self.rss)
        summary["rss_peaks_frozen_at_s"] = self.rss.frozen_at
        summary["phases_s"] = [
            {"phase": name, "start": round(start, 1), "end": round(end, 1) if end else None}
            for name, start, end in self.rss.phases
        ]
        for name, title, only in (
            ("memory-replay.png", "RSS per worker during the replay", "replay"),
            ("memory-run.png", "RSS per worker over the whole run", None),
        ):
            problem = self.rss.plot(self.results / name, title, only=only)
            if problem:
                self.console.print(f"[yellow]{problem}[/]")
                summary["plot"] = problem
                break
        with (self.results / "memory-samples.csv").open("w") as handle:
            handle.write("t_s,service,pid,rss_mib\n")
            for sample in self.rss.samples:
                handle.write(f"{sample.t:.2f},{sample.service},{sample.pid},{sample.mib:.2f}\n")

    def throughput_figures(self) -> None:
        """The headline figures and the ratios between saga, single app and pgbench."""
        summary = self.summary
        saga = summary["saga"]
        summary["saga_sales_per_s"] = saga["per_s"]
        summary["saga_p50_ms"] = saga["p50_ms"]
        summary["saga_p95_ms"] = saga["p95_ms"]
        summary["saga_p99_ms"] = saga["p99_ms"]
        summary["monolith_sales_per_s"] = (summary.get("monolith") or {}).get("per_s")
        summary["monolith_full_sales_per_s"] = (summary.get("monolith_full") or {}).get("per_s")
        summary["pgbench_sales_per_s"] = (summary.get("pgbench") or {}).get("per_s")
        summary["ratios"] = {
            "saga_vs_monolith": _ratio(saga["per_s"], summary["monolith_sales_per_s"]),
            "saga_vs_monolith_full": _ratio(saga["per_s"], summary["monolith_full_sales_per_s"]),
            "monolith_full_vs_monolith": _ratio(
                summary["monolith_full_sales_per_s"], summary["monolith_sales_per_s"]
            ),
            "saga_vs_pgbench": _ratio(saga["per_s"], summary["pgbench_sales_per_s"]),
            "cpu_lines_vs_one_line": _ratio(
                (summary.get("saga_lines") or {}).get("cpu_ms_per_sale", {}).get("total"),
                (saga.get("cpu_ms_per_sale") or {}).get("total"),
            ),
            "monolith_vs_pgbench": _ratio(
                summary["monolith_sales_per_s"], summary["pgbench_sales_per_s"]
            ),
        }


def _run_growth(sampler: RssSampler) -> float | None:
    """Worst worker's RSS growth from the start of the saga to the end of the replay."""
    saga = sampler.phase("saga")
    replay = sampler.phase("replay")
    if saga is None or replay is None:
        return None
    worst = None
    by_worker: dict[int, list[Any]] = {}
    for sample in sampler.samples:
        if sample.service in SERVICES:
            by_worker.setdefault(sample.pid, []).append(sample)
    for samples in by_worker.values():
        first = [s.mib for s in samples if saga[0] <= s.t <= saga[0] + 10]
        last = [s.mib for s in samples if replay[1] - 10 <= s.t <= replay[1]]
        if first and last:
            growth = floor(last) / floor(first) * 100 - 100
            worst = growth if worst is None else max(worst, growth)
    return round(worst, 2) if worst is not None else None


def _prepare_results(results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    for pattern in ("*.prof", "*-top25.txt", "*.png", "memory-samples.csv", "summary.json"):
        for stale in results.glob(pattern):
            stale.unlink()
    shutil.rmtree(results / "logs", ignore_errors=True)
    (results / "logs").mkdir()


def main() -> int:
    """Run every phase and write ``summary.json``; 0 if the run completed and the audit passed.

    ``BENCH_TRACING=1`` runs only the tracing on/off comparison (bench/tracing_bench.py).
    """
    if os.environ.get("BENCH_TRACING") == "1":
        from bench import tracing_bench  # noqa: PLC0415

        return tracing_bench.main()
    knobs = Knobs()
    console = Console(highlight=False, width=110)
    _prepare_results(knobs.results)
    started = time.monotonic()
    console.print(
        f"[bold]Shop benchmark[/]: {knobs.buyers} buyers; saga {knobs.duration_s:g} s, single app "
        f"{knobs.monolith_s:g} s, pgbench {knobs.pgbench_s:g} s, replay {knobs.replay_s:g} s; "
        f"gunicorn {knobs.workers} workers x {knobs.threads} threads"
    )
    with (
        tempfile.TemporaryDirectory(prefix="shop-bench-prof-") as profile_tmp,
        database(knobs, console) as url,
    ):
        for package in PACKAGES.values():
            upgrade(package, url)
        bench = Bench(knobs, console, url, Path(profile_tmp))
        try:
            bench.start(started)
            bench.saga()
            bench.unloaded(
                "saga-unloaded", bench.stack.urls["sales"] + "/sales", bench.dataset.product_ids
            )
            bench.saga_lines()
            batching_bench.run(bench)
            bench.monolith()
            bench.pgbench()
            bench.replay()
            # Memory figures stop here: the profiler's own tables must not count as
            # the services' memory, so the profiled windows come last.
            bench.rss.freeze_peaks()
            bench.saga_profiled()
            bench.replay_profiled()
            bench.tracing()
            bench.audit()
        finally:
            bench.stop()
    bench.memory_figures()
    bench.throughput_figures()
    summary = bench.summary
    summary["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    summary["targets"] = _targets(summary)
    (knobs.results / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print_summary(summary, console)
    batching_bench.print_table(summary, console)
    console.print(
        f"results in {knobs.results} ({summary['elapsed_s']:.0f} s); load average "
        f"{summary['machine']['load_average_start']} -> {summary['machine']['load_average_end']}"
    )
    return 0 if summary.get("audit_ok") else 1


if __name__ == "__main__":
    sys.exit(main())
