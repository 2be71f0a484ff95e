"""What tracing costs: CPU per sale of the services with tracing off, on, and sampled.

``make bench`` runs it as its last phase before the audit (``BENCH_TRACING_S=0``
skips it); ``BENCH_TRACING=1 make bench`` (or ``.venv/bin/python
bench/tracing_bench.py``) runs it alone. It restarts the services before each
window with that window's ``OTEL_*`` variables and runs the closed-loop saga
load (:mod:`bench.loadgen`) for ``BENCH_TRACING_S`` seconds (default 10),
interleaving the modes round by round (``BENCH_TRACING_ROUNDS``, default 2) so
that a busy machine's noise hits them alike:

* ``off``: no ``OTEL_*`` variable (no SDK loaded);
* ``on``: every span of every sale (``always_on``) exported over OTLP/HTTP;
* ``unsampled``: tracing on, ratio 0: what a request that is not sampled costs
  (goal: at most 3 % over ``off``);
* ``sampled``: ``parentbased_traceidratio`` with ``BENCH_TRACING_RATIO``
  (default 0.1, the default of ``shopkit.telemetry``; 0 skips this mode;
  goal: at most 10 % over ``off``).

Spans go to a receiver in this process, which only reads and acknowledges them
(its CPU is the driver's, not counted). The figure is the services' CPU
milliseconds per completed sale (gunicorn masters and workers, from ``/proc``)
and its rise over ``off``; the goal for ``on`` is < 15 %. Other knobs as in
``bench/harness.py`` (``BENCH_BUYERS``, ``BENCH_WARMUP_S``...).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from rich.console import Console

from bench.cpu import CpuMeter, tree
from bench.harness import SAGA_SERVICES, Knobs, Stack, database, env_float, env_int, seed
from bench.loadgen import run_load

GOAL_PCT = 15.0


class SpanSink:
    """Accepts OTLP/HTTP exports on 127.0.0.1 and counts their spans by mode.

    The driver decodes the bodies (its CPU is not counted): spans per sale is the
    number of spans over the number of ``POST /sales`` server spans, so it needs
    no guess at how many sales the warm-up traced. Spans a window left in a
    service's export queue arrive when the next window restarts the stack, still
    counted under the mode that made them (:attr:`mode` changes after the restart).
    """

    def __init__(self) -> None:
        self.exports = 0
        self.bytes = 0
        self.mode = ""
        #: Per mode: ``{"spans": n, "sales": n, "by_service": {service: n}}``.
        self.spans: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.count(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, body: bytes) -> None:
        """Count one export's spans under the current mode."""
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self._lock:
            self.exports += 1
            self.bytes += len(body)
            tally = self.spans.setdefault(self.mode, {"spans": 0, "sales": 0, "by_service": {}})
            for resource_spans in request.resource_spans:
                service = next(
                    (a.value.string_value for a in resource_spans.resource.attributes
                     if a.key == "service.name"),
                    "?",
                )  # fmt: skip
                for scope_spans in resource_spans.scope_spans:
                    spans = scope_spans.spans
                    tally["spans"] += len(spans)
                    tally["by_service"][service] = tally["by_service"].get(service, 0) + len(spans)
                    if service == "sales":
                        tally["sales"] += sum(
                            1 for span in spans
                            if span.name == "POST /sales" and span.kind == Span.SPAN_KIND_SERVER
                        )  # fmt: skip

    def per_sale(self, mode: str) -> dict[str, float] | None:
        """Spans per sale in ``mode``, in all and per service (``None``: no sale was traced)."""
        tally = self.spans.get(mode)
        if not tally or not tally["sales"]:
            return None
        sales = tally["sales"]
        return {
            "all": round(tally["spans"] / sales, 2),
            **{name: round(n / sales, 2) for name, n in sorted(tally["by_service"].items())},
        }

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
    """(Re)start the services with ``env`` added, and watch their CPU."""
    stack.stop()
    stack.processes.clear()
    stack.env.update(env)
    stack.start()
    for service, pid in stack.master_pids().items():
        cpu.watch(service, lambda pid=pid: tree(pid))  # type: ignore[misc]


def modes(sink: SpanSink, ratio: float) -> dict[str, dict[str, str]]:
    """Each window's ``OTEL_*`` settings: off, every span (``on``), none of the traces
    (``unsampled``), and ``ratio`` of them (``sampled``)."""
    on = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_TRACES_SAMPLER_ARG": "",
    }
    chosen = {"off": {name: "" for name in on}, "on": on}  # empty is unset for shopkit.telemetry
    # Everything loaded and instrumented, no trace kept: what a request not sampled costs.
    chosen["unsampled"] = {
        **on,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0",
    }
    if ratio > 0:
        chosen["sampled"] = {
            **on,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": f"{ratio:g}",
        }
    return chosen


def compare(
    stack: Stack, knobs: Knobs, dataset: Any, cpu: CpuMeter, console: Console
) -> dict[str, Any]:
    """Interleaved windows of every mode (off, on, sampled) for ``BENCH_TRACING_ROUNDS`` rounds.

    Restarts ``stack`` before each window with that mode's ``OTEL_*`` variables
    (and leaves it running untraced). Returns the figures.
    """
    seconds = env_float("BENCH_TRACING_S", 10)
    rounds = env_int("BENCH_TRACING_ROUNDS", 2)
    ratio = env_float("BENCH_TRACING_RATIO", 0.1)
    sink = SpanSink()
    chosen = modes(sink, ratio)
    windows: dict[str, list[dict[str, Any]]] = {mode: [] for mode in chosen}
    load_start = [round(x, 2) for x in os.getloadavg()]
    console.print(
        f"[bold]tracing overhead[/]: {', '.join(chosen)}, {seconds:g} s windows, {rounds} round(s)"
    )
    try:
        for index in range(rounds):
            for mode, env in chosen.items():
                run_stack(stack, cpu, env)  # flushes the last window's spans under its mode
                sink.mode = mode
                exports = sink.exports
                figures = window(stack, knobs, dataset, cpu, f"tracing-{mode}-{index}", seconds)
                figures["exports"] = sink.exports - exports
                figures["load_average_1m"] = round(os.getloadavg()[0], 2)
                windows[mode].append(figures)
                console.print(f"  tracing {mode}: {figures}")
        run_stack(stack, cpu, chosen["off"])  # flushes the last window's spans
    finally:
        sink.server.shutdown()

    def mean_total(mode: str) -> float:
        values = [w["cpu_ms_per_sale"]["total"] for w in windows[mode]]
        return sum(values) / len(values)

    off = mean_total("off")
    summary: dict[str, Any] = {
        "windows": windows,
        "cpu_ms_per_sale": {mode: round(mean_total(mode), 2) for mode in chosen},
        "goal_pct": GOAL_PCT,
        "sampled_ratio": ratio if "sampled" in chosen else None,
        "spans_exported": {"requests": sink.exports, "bytes": sink.bytes},
        "spans_per_sale": {mode: sink.per_sale(mode) for mode in chosen if mode != "off"},
        "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
    }
    for mode in chosen:
        if mode != "off":
            summary[f"overhead_{mode}_pct"] = round((mean_total(mode) - off) / off * 100, 1)
    summary["overhead_pct"] = summary["overhead_on_pct"]
    summary["met"] = summary["overhead_pct"] < GOAL_PCT
    return summary


def report(summary: dict[str, Any], console: Console) -> None:
    """One line per traced mode: CPU per sale against off."""
    per_sale = summary["cpu_ms_per_sale"]
    console.print(
        f"services' CPU per sale: {per_sale['off']:.2f} ms off, {per_sale['on']:.2f} ms with every "
        f"span: [bold]{summary['overhead_on_pct']:+.1f}%[/] (goal < {GOAL_PCT:g}%)"
    )
    console.print(
        f"  {per_sale['unsampled']:.2f} ms with no trace sampled: "
        f"[bold]{summary['overhead_unsampled_pct']:+.1f}%[/] (goal <= 3%)"
    )
    if "sampled" in per_sale:
        console.print(
            f"  {per_sale['sampled']:.2f} ms with parentbased_traceidratio "
            f"{summary['sampled_ratio']:g}: {summary['overhead_sampled_pct']:+.1f}% (goal <= 10%)"
        )
    for mode, spans in summary.get("spans_per_sale", {}).items():
        if spans is not None:
            console.print(f"  spans per sale ({mode}): {spans}")
    load = summary["load_average"]
    console.print(
        f"  {summary['spans_exported']['requests']} exports, "
        f"{summary['spans_exported']['bytes'] / 1e6:.1f} MB of spans; "
        f"load average {load['start']} -> {load['end']}"
    )


def main() -> int:
    """Run the windows alone (no other phase) and print (and write) the overhead."""
    knobs = Knobs()
    console = Console(highlight=False, width=110)
    knobs.results.mkdir(parents=True, exist_ok=True)
    console.print(
        f"[bold]Tracing overhead[/]: {knobs.buyers} buyers; "
        f"gunicorn {knobs.workers} x {knobs.threads}"
    )
    with database(knobs, console) as url:
        stack = Stack(url, knobs, knobs.results / "profiles", knobs.results / "logs")
        stack.log_dir.mkdir(parents=True, exist_ok=True)
        cpu = CpuMeter(interval_s=knobs.sample_s)
        cpu.start()
        try:
            stack.start()
            dataset = seed(stack, knobs)
            summary = compare(stack, knobs, dataset, cpu, console)
        finally:
            cpu.stop()
            stack.stop()
    (knobs.results / "tracing.json").write_text(json.dumps(summary, indent=2) + "\n")
    report(summary, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
