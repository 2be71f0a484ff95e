"""Batching on vs off in one run (issue #20): the saga at 1, 16 and 64 buyers, both ways.

The sales service is restarted for each mode with the same gunicorn settings
(``BENCH_SALES_THREADS`` threads per worker, a database pool to match):

* **off**: ``SALES_BATCH_MAX=1``, every purchase calls inventory and customers alone;
* **on**: the defaults of ``shopkit.config`` (or ``SALES_BATCH_*`` from the environment).

Each cell is a closed loop of ``n`` buyers (the seeded buyers, reused round-robin
past their number) for ``BENCH_BATCH_S`` seconds after ``BENCH_WARMUP_S``, with
CPU per sale per part over exactly the window, and the mean batch size read
from the sales service's ``shop_sales_batch_size`` histogram (both steps).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import requests
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from bench.cpu import CpuMeter, tree
from bench.loadgen import run_load

if TYPE_CHECKING:
    from bench.harness import BenchRun

MODES = {"off": {"SALES_BATCH_MAX": "1"}, "on": {}}


def _buyer_counts() -> list[int]:
    raw = os.environ.get("BENCH_BATCH_BUYERS", "1,16,64")
    return [int(part) for part in raw.split(",") if part.strip()]


#: The steps whose batches the table's mean batch size counts (the remote calls); the
#: sales database's batched writes (``record``, ``save``) are reported beside it.
REMOTE_STEPS = ("reserve", "debit")


def _batch_totals(url: str) -> dict[str, tuple[float, float]]:
    """``{step: (calls, batches)}`` so far in the sales service's batch-size histogram."""
    totals: dict[str, tuple[float, float]] = {}
    body = requests.get(url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            step = sample.labels.get("step", "")
            calls, batches = totals.get(step, (0.0, 0.0))
            if sample.name == "shop_sales_batch_size_sum":
                totals[step] = (calls + sample.value, batches)
            elif sample.name == "shop_sales_batch_size_count":
                totals[step] = (calls, batches + sample.value)
    return totals


def _mean_batches(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> tuple[float | None, dict[str, float]]:
    """The mean batch of the remote steps together, and each step's own, over a window."""
    sent = {
        step: (calls - before.get(step, (0, 0))[0], batches - before.get(step, (0, 0))[1])
        for step, (calls, batches) in after.items()
    }
    by_step = {step: round(c / b, 2) for step, (c, b) in sent.items() if b}
    remote = [sent[step] for step in REMOTE_STEPS if step in sent]
    batches = sum(b for _, b in remote)
    mean = round(sum(c for c, _ in remote) / batches, 2) if batches else None
    return mean, by_step


def _restart_sales(
    bench: BenchRun, extra_env: dict[str, str], threads: int, workers: int | None = None
) -> str:
    """Restart sales with ``extra_env``, ``threads`` and ``workers``; watch its new processes."""
    stack = bench.stack
    stack.processes["sales"].stop(timeout_s=10)
    process = stack.start_service("sales", extra_env=extra_env, threads=threads, workers=workers)
    pid = process.process.pid if process.process is not None else 0
    bench.rss.watch("sales", pid)
    bench.cpu.watch("sales", lambda: tree(pid))
    return process.url


def run(bench: BenchRun) -> None:
    """Measure every (mode, buyers) cell and put the table in ``summary["batching"]``."""
    knobs = bench.knobs
    seconds = float(os.environ.get("BENCH_BATCH_S", "10"))
    if seconds <= 0 or bench.dataset is None:
        return
    threads = int(os.environ.get("BENCH_SALES_THREADS", "32"))
    workers = int(os.environ.get("BENCH_SALES_WORKERS", "1"))
    dataset = bench.dataset
    table: dict[str, dict[str, Any]] = {}
    bench.console.print(
        f"[bold]batching on vs off[/], sales with {workers} workers x {threads} threads"
    )
    for mode, env in MODES.items():
        url = _restart_sales(bench, {**env, "DB_POOL_SIZE": str(threads)}, threads, workers)
        table[mode] = {}
        for buyers in _buyer_counts():
            phase = f"batch-{mode}-{buyers}"
            who = [dataset.buyers[i % len(dataset.buyers)] for i in range(buyers)]
            before = _batch_totals(url)
            bench.rss.begin(phase)
            try:
                result = run_load(
                    phase,
                    url + "/sales",
                    who,
                    dataset.product_ids,
                    duration_s=seconds,
                    warmup_s=knobs.warmup_s,
                    seed=knobs.seed + 7,
                    on_window=(
                        lambda p=phase: bench.cpu.begin(p),
                        lambda p=phase: bench.cpu.end(p),
                    ),
                )
            finally:
                bench.rss.end(phase)
            after = _batch_totals(url)
            figures = result.summary()
            figures["cpu_ms_per_sale"] = CpuMeter.per_sale(
                bench.cpu.results.get(phase, {}), result.completed
            )
            figures["mean_batch_size"], figures["mean_batch_by_step"] = _mean_batches(before, after)
            figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
            table[mode][str(buyers)] = figures
            cpu = figures["cpu_ms_per_sale"]
            bench.console.print(
                f"  {phase}: [bold]{figures['per_s']:.1f}/s[/], p50 {figures['p50_ms']} ms, "
                f"p99 {figures['p99_ms']} ms, {figures['errors']} errors, "
                f"CPU {cpu.get('total', 0):.1f} ms/sale, mean batch {figures['mean_batch_size']} "
                f"{figures['mean_batch_by_step']}"
            )
    _restart_sales(bench, {}, knobs.threads)  # the later phases run as before
    bench.summary["batching"] = {
        "threads": threads,
        "workers": workers,
        "seconds": seconds,
        "cells": table,
    }
    ratios: dict[str, Any] = {}
    for buyers, on in table["on"].items():
        off = table["off"].get(buyers) or {}
        on_cpu = (on.get("cpu_ms_per_sale") or {}).get("total")
        off_cpu = (off.get("cpu_ms_per_sale") or {}).get("total")
        ratios[buyers] = {
            "sales_per_s_on_vs_off": round(on["per_s"] / off["per_s"], 2)
            if off.get("per_s")
            else None,
            "cpu_per_sale_on_vs_off": round(on_cpu / off_cpu, 2) if on_cpu and off_cpu else None,
        }
    bench.summary["batching"]["ratios"] = ratios


def _batch_cell(cell: dict[str, Any]) -> str:
    """The mean batch of the remote steps, then the sales database's (record, save)."""
    mean = cell.get("mean_batch_size")
    if not mean:
        return "—"
    by_step = cell.get("mean_batch_by_step") or {}
    writes = ", ".join(f"{step} {by_step[step]}" for step in ("record", "save") if step in by_step)
    return f"{mean} ({writes})" if writes else str(mean)


def print_table(summary: dict[str, Any], console: Console) -> None:
    """The on/off table: sales/s, p50/p99, CPU per sale by part, mean batch size."""
    batching = summary.get("batching")
    if not batching:
        return
    table = Table(
        title=f"batching on vs off (sales: {batching.get('workers')} workers x "
        f"{batching['threads']} threads)",
        title_justify="left",
    )
    for column in ("mode", "buyers", "sales/s", "p50 / p99 ms", "CPU ms per sale", "mean batch"):
        table.add_column(column, justify="right" if column != "mode" else "left")
    for mode, cells in batching["cells"].items():
        for buyers, cell in cells.items():
            cpu = cell.get("cpu_ms_per_sale") or {}
            parts = ", ".join(f"{k} {v:.1f}" for k, v in cpu.items() if k != "total" and v >= 0.05)
            table.add_row(
                mode,
                buyers,
                f"{cell['per_s']:.1f}",
                f"{cell['p50_ms']} / {cell['p99_ms']}",
                f"{cpu.get('total', 0):.1f} ({parts})",
                _batch_cell(cell),
            )
    for buyers, ratio in batching.get("ratios", {}).items():
        table.add_row(
            "on / off",
            buyers,
            f"{ratio['sales_per_s_on_vs_off']}x",
            "",
            f"{ratio['cpu_per_sale_on_vs_off']}x",
            "",
        )
    console.print(table)
