"""The phases of ``make bench``: one :class:`Bench` run fills its summary phase by phase."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import monolith, profiling, tracing_bench
from bench.audit import audit, run_seeder
from bench.cpu import CpuMeter, tree
from bench.harness import (
    BUYER_FUNDS,
    PRODUCT_STOCK,
    SAGA_SERVICES,
    SERVICES,
    Dataset,
    Knobs,
    Stack,
    env_float,
    machine_info,
    postmaster_pid,
    seed,
)
from bench.loadgen import LoadResult, run_load
from bench.memory import RssSampler, floor
from bench.pgbench import pgbench


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
        if env_float("BENCH_TRACING_S", 10) <= 0:
            return
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
        return run_seeder(self.stack, args, self.seeder_log, timeout_s)

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
