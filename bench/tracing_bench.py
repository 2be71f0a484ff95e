"""What tracing costs: CPU per sale of the services with tracing off, then on.

``BENCH_TRACING=1 make bench`` (or ``.venv/bin/python bench/tracing_bench.py``)
starts customers, inventory and sales, seeds buyers and products, and runs
the closed-loop saga load (:mod:`bench.loadgen`) for ``BENCH_TRACING_S``
seconds (default 15) per window, alternating tracing off and on for
``BENCH_TRACING_ROUNDS`` rounds (default 1). With tracing on, every service
exports every span (``always_on``) over OTLP/HTTP to a receiver in this
process, which only reads and acknowledges them (its CPU is the driver's, not
counted). The figure is the services' CPU milliseconds per completed sale
(their gunicorn masters and workers, from ``/proc``), and its relative rise.
Other knobs as in ``bench/run.py`` (``BENCH_BUYERS``, ``BENCH_WARMUP_S``...).
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console

from bench.cpu import CpuMeter, tree
from bench.loadgen import run_load
from bench.run import (
    SAGA_SERVICES,
    Knobs,
    Stack,
    _env_float,
    _env_int,
    database,
    seed,
)
from shopkit.migrations import upgrade
from shopkit.stack import PACKAGES

GOAL_PCT = 15.0


class SpanSink:
    """Accepts OTLP/HTTP exports on 127.0.0.1 and counts them (bodies are read, not decoded)."""

    def __init__(self) -> None:
        self.exports = 0
        self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.exports += 1
                sink.bytes += len(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def window(
    stack: Stack, knobs: Knobs, dataset: Any, cpu: CpuMeter, name: str, seconds: float
) -> dict[str, Any]:
    """One measured load window; CPU per sale per service."""
    result = run_load(
        name,
        stack.urls["sales"] + "/sales",
        dataset.buyers,
        dataset.product_ids,
        duration_s=seconds,
        warmup_s=knobs.warmup_s,
        seed=knobs.seed,
        on_window=(lambda: cpu.begin(name), lambda: cpu.end(name)),
    )
    spent = {group: cpu.results[name].get(group, 0.0) for group in SAGA_SERVICES}
    per_sale = CpuMeter.per_sale(spent, result.completed)
    return {"per_s": round(result.per_s, 1), "completed": result.completed,
            "errors": result.error_count, "cpu_ms_per_sale": per_sale}  # fmt: skip


def run_stack(stack: Stack, cpu: CpuMeter, env: dict[str, str]) -> None:
    """(Re)start the three services with ``env`` added, and watch their CPU."""
    stack.stop()
    stack.processes.clear()
    stack.env.update(env)
    stack.start()
    for service, pid in stack.master_pids().items():
        cpu.watch(service, lambda pid=pid: tree(pid))  # type: ignore[misc]


def main() -> int:
    """Run the off/on windows and print (and write) the overhead."""
    knobs = Knobs()
    seconds = _env_float("BENCH_TRACING_S", 15)
    rounds = _env_int("BENCH_TRACING_ROUNDS", 1)
    console = Console(highlight=False, width=110)
    knobs.results.mkdir(parents=True, exist_ok=True)
    sink = SpanSink()
    tracing_on = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": "always_on",
    }
    tracing_off = {name: "" for name in tracing_on}  # empty is unset for shopkit.telemetry
    windows: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    console.print(
        f"[bold]Tracing overhead[/]: {knobs.buyers} buyers, {seconds:g} s per window, "
        f"{rounds} round(s) of off then on; gunicorn {knobs.workers} x {knobs.threads}"
    )
    with database(knobs, console) as url:
        for package in PACKAGES.values():
            upgrade(package, url)
        stack = Stack(url, knobs, knobs.results / "profiles", knobs.results / "logs")
        stack.log_dir.mkdir(parents=True, exist_ok=True)
        cpu = CpuMeter(interval_s=knobs.sample_s)
        cpu.start()
        try:
            stack.start()
            dataset = seed(stack, knobs)
            for index in range(rounds):
                for mode, env in (("off", tracing_off), ("on", tracing_on)):
                    run_stack(stack, cpu, env)
                    figures = window(stack, knobs, dataset, cpu, f"{mode}-{index}", seconds)
                    windows[mode].append(figures)
                    console.print(f"  tracing {mode}: {figures}")
        finally:
            cpu.stop()
            stack.stop()

    def mean_total(mode: str) -> float:
        values = [w["cpu_ms_per_sale"]["total"] for w in windows[mode]]
        return sum(values) / len(values)

    off, on = mean_total("off"), mean_total("on")
    overhead = round((on - off) / off * 100, 1)
    summary = {"windows": windows, "cpu_ms_per_sale_off": round(off, 2),
               "cpu_ms_per_sale_on": round(on, 2), "overhead_pct": overhead,
               "goal_pct": GOAL_PCT, "met": overhead < GOAL_PCT,
               "spans_exported": {"requests": sink.exports, "bytes": sink.bytes}}  # fmt: skip
    (knobs.results / "tracing.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.print(
        f"services' CPU per sale: {off:.2f} ms off, {on:.2f} ms on: [bold]{overhead:+.1f}%[/] "
        f"(goal < {GOAL_PCT:g}%); {sink.exports} exports, {sink.bytes / 1e6:.1f} MB of spans"
    )
    return 0 if summary["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
