"""Seeder figures: populate 10,000 customers and 1,000 products, then a short replay and an audit.

Usage::

    .venv/bin/python bench/seed_bench.py                       # the issue-6 figure
    .venv/bin/python bench/seed_bench.py --customers 2000 --replay-seconds 10

It creates a fresh database (on ``DATABASE_URL``'s server, or an embedded
PostgreSQL it starts in a temporary directory when ``DATABASE_URL`` is unset,
durable like ``make run`` unless ``--fast-db``), migrates every service,
starts the four services under gunicorn on free ports with their production
settings (2 workers x 4 threads, full-cost password hashing), and then,
through HTTP only, exactly as ``python -m seeder`` would:

1. times ``populate --customers N --products M`` (target: 10,000 + 1,000 in <= 15 s);
2. replays for ``--replay-seconds`` at ``--concurrency`` with no rate limit and
   reports the attempt rate and the purchase latency p50/p99;
3. audits the result (every invariant must hold).

The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cpu import CpuMeter, tree
from devstack.postgres import scratch_database, throwaway_server
from devstack.processes import ServiceProcess, free_port
from seeder.audit import Auditor
from seeder.cli import prepare_replay, print_audit, run_populate
from seeder.client import Services, admin_login
from seeder.config import Config
from seeder.replay import ReplayOptions
from seeder.replay.progress import stats_table, watch
from shopkit.migrations import upgrade
from shopkit.registry import packages

ADMIN = ("admin", "bench-admin-password")


def watch_parts(meter: CpuMeter, services: dict[str, int | None], postgres: int | None) -> None:
    """Have ``meter`` follow each service's process tree, PostgreSQL's and the seeder's."""
    for name, pid in services.items():
        if pid is not None:
            meter.watch(name, lambda pid=pid: tree(pid))  # type: ignore[misc]
    if postgres is not None:
        meter.watch("postgres", lambda: tree(postgres))
    # The seeder is this process: CpuMeter reads "client" last and leaves out the
    # processes another group already claimed (the services are our children).
    meter.watch("client", lambda: tree(os.getpid()))


def cpu_line(meter: CpuMeter, spent: dict[str, float], wall_s: float) -> str:
    """CPU seconds by part (the seeder first), as :meth:`CpuMeter.end` returned them."""
    groups = ["client", *(group for group in meter.groups if group != "client")]
    used = {"seeder" if group == "client" else group: spent.get(group, 0.0) for group in groups}
    parts = ", ".join(f"{name} {value:.1f}" for name, value in used.items())
    return f"CPU-s: {parts}; total {sum(used.values()):.1f} in {wall_s:.1f} s wall"


@contextmanager
def database(*, durable: bool) -> Iterator[tuple[str, int | None]]:
    """A fresh database with every service migrated (and the server's pid if embedded)."""
    with (
        throwaway_server(
            "seed-bench-", database_url=os.environ.get("DATABASE_URL"), durable=durable
        ) as (server, admin_url),
        scratch_database(admin_url, "seed_bench") as url,
    ):
        for package in packages().values():
            upgrade(package, url)
        yield url, (server.get_pid() if server is not None else None)  # type: ignore[attr-defined]


@contextmanager
def services_running(url: str) -> Iterator[tuple[Config, dict[str, int | None]]]:
    """The four services under gunicorn on free ports; their configuration for the seeder."""
    ports = {name: free_port() for name in packages()}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {
        "DATABASE_URL": url,
        "ADMIN_USERNAME": ADMIN[0],
        "ADMIN_PASSWORD": ADMIN[1],
        "SERVICE_CLIENT_SECRET": "bench-service-secret",
        "LOG_LEVEL": "WARNING",
        **{f"{name.upper()}_URL": value for name, value in urls.items()},
    }
    processes = [ServiceProcess(name, ports[name], env=env).start() for name in packages()]
    try:
        for process in processes:
            process.wait_ready(60)
        config = Config(
            customers_url=urls["customers"],
            inventory_url=urls["inventory"],
            sales_url=urls["sales"],
            reviews_url=urls["reviews"],
            admin_username=ADMIN[0],
            admin_password=ADMIN[1],
        )
        yield config, {p.service: p.process.pid if p.process else None for p in processes}
    finally:
        for process in processes:
            process.stop(timeout_s=8, graceful=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--parallel", type=int, default=2, help="batch requests in flight")
    parser.add_argument("--replay-seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--fast-db", action="store_true", help="embedded database without fsync")
    args = parser.parse_args()
    console = Console(highlight=False)
    with (
        database(durable=not args.fast_db) as (url, pg_pid),
        services_running(url) as (config, pids),
    ):
        meter = CpuMeter()
        watch_parts(meter, pids, pg_pid)
        meter.start()
        services = Services(config, pool_size=max(16, args.concurrency * 2))
        admin = admin_login(services)
        load_before = os.getloadavg()[0]
        meter.begin("populate")
        started = time.perf_counter()
        result = run_populate(
            services,
            admin,
            console,
            customers=args.customers,
            products=args.products,
            seed=args.seed,
            parallel=args.parallel,
            images=False,  # the target is rows per second; pictures are one upload each on top
        )
        populate_s = time.perf_counter() - started
        populate_cpu = meter.end("populate")
        options = ReplayOptions(
            seed=args.seed,
            duration_s=args.replay_seconds,
            concurrency=args.concurrency,
            keep_outcomes=False,
        )
        replay = prepare_replay(services, admin, console, options)
        meter.begin("replay")
        watch(replay, console, report_every_s=5.0)
        replay_cpu = meter.end("replay")
        meter.stop()
        console.print(stats_table(replay, "replay"))
        report = Auditor(services, admin).run()
        print_audit(report, console)
        stats = replay.stats
        p50, p99 = stats.percentile("purchase", 50), stats.percentile("purchase", 99)
        console.print(
            f"\nFIGURES  populate {result.customers_created:,} customers + "
            f"{result.products_created:,} products: {populate_s:.2f} s "
            f"(target <= 15 s: {'met' if populate_s <= 15 else 'MISSED'})\n"
            f"         replay {args.replay_seconds:g} s at concurrency {args.concurrency}: "
            f"{stats.rate():.1f} attempts/s, {stats.completed:,} completed, purchase p50 "
            f"{(p50 or 0) * 1000:.0f} ms, p99 {(p99 or 0) * 1000:.0f} ms\n"
            f"         audit: {'passed' if report.ok else 'FAILED'} "
            f"({sum(report.sales.values()):,} sales)\n"
            f"         populate {cpu_line(meter, populate_cpu, populate_s)}\n"
            f"         replay   {cpu_line(meter, replay_cpu, stats.elapsed())}\n"
            f"         load average (1 min) before: {load_before:.2f}, "
            f"after: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
        )
        return 0 if report.ok and not stats.verification_failures else 1


if __name__ == "__main__":
    sys.exit(main())
