"""What a request that is not sampled (or one in ten sampled) costs, measured in pairs.

:mod:`bench.tracing_bench` measures each tracing mode in a window of its own. On a
shared two-core machine the CPU a sale costs drifts between windows a minute apart
by more than the few per cent in question. Here two copies of the saga's services
(customers, inventory, sales) run side by side on one database: one copy with
tracing off, the other in the mode measured. Each copy is loaded by half the
buyers over the same window, so whatever the machine does meanwhile, it does to
both copies.

Each pair runs twice per round, the copies' roles swapped, so that neither copy's
ports nor its start order can favour a mode. The figure is the traced copy's CPU
per sale over the untraced copy's, per window, and the median of those ratios.

Run alone: ``.venv/bin/python bench/tracing_paired.py``.
Knobs as in :mod:`bench.tracing_bench` (``BENCH_TRACING_S``, ``BENCH_TRACING_ROUNDS``,
``BENCH_TRACING_RATIO``) and :mod:`bench.harness` (``BENCH_BUYERS``, ``BENCH_WARMUP_S``...).
Results go to ``bench/results/tracing-paired.json``.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console

from bench.cpu import CpuMeter, tree
from bench.harness import SAGA_SERVICES, Dataset, Knobs, Stack, database, env_float, env_int, seed
from bench.loadgen import LoadResult, run_load
from bench.tracing_bench import SpanSink, modes

#: The modes measured against ``off``, with the goal for each (per cent more CPU per sale).
GOALS_PCT = {"unsampled": 3.0, "sampled": 10.0}
COPIES = ("a", "b")


def restart(stack: Stack, cpu: CpuMeter, copy: str, env: dict[str, str]) -> None:
    """(Re)start ``stack`` with ``env`` added; its CPU is counted as ``<copy>:<service>``."""
    stack.stop()
    stack.processes.clear()
    stack.env.update(env)
    stack.start()
    for service, pid in stack.master_pids().items():
        cpu.watch(f"{copy}:{service}", lambda pid=pid: tree(pid))  # type: ignore[misc]


def paired_window(
    stacks: tuple[Stack, Stack],
    knobs: Knobs,
    dataset: Dataset,
    cpu: CpuMeter,
    name: str,
    seconds: float,
) -> list[dict[str, Any]]:
    """Load both copies at once, half the buyers each; each copy's figures."""
    half = len(dataset.buyers) // 2
    shares = (dataset.buyers[:half], dataset.buyers[half:])
    results: list[LoadResult | None] = [None, None]
    failures: list[BaseException] = []

    def load(index: int) -> None:
        phase = f"{name}-{COPIES[index]}"
        try:
            results[index] = run_load(
                phase,
                stacks[index].urls["sales"] + "/sales",
                shares[index],
                dataset.product_ids,
                duration_s=seconds,
                warmup_s=knobs.warmup_s,
                seed=knobs.seed + index,
                on_window=(lambda: cpu.begin(phase), lambda: cpu.end(phase)),
            )
        except BaseException as error:  # reported by the caller, after both threads ended
            failures.append(error)

    threads = [threading.Thread(target=load, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    figures = []
    for index, copy in enumerate(COPIES):
        result = results[index]
        assert result is not None
        spent = cpu.results[f"{name}-{copy}"]
        mine = {service: spent.get(f"{copy}:{service}", 0.0) for service in SAGA_SERVICES}
        figures.append(
            {
                "per_s": round(result.per_s, 1),
                "completed": result.completed,
                "errors": result.error_count,
                "cpu_ms_per_sale": CpuMeter.per_sale(mine, result.completed),
            }
        )
    return figures


def compare(
    stacks: tuple[Stack, Stack], knobs: Knobs, dataset: Dataset, cpu: CpuMeter, console: Console
) -> dict[str, Any]:
    """Every traced mode against ``off``, in pairs, both role assignments per round."""
    seconds = env_float("BENCH_TRACING_S", 10)
    rounds = env_int("BENCH_TRACING_ROUNDS", 2)
    sink = SpanSink()
    chosen = modes(sink, env_float("BENCH_TRACING_RATIO", 0.1))
    traced = [mode for mode in GOALS_PCT if mode in chosen]
    pairs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in traced}
    console.print(
        f"[bold]tracing in pairs[/]: {', '.join(traced)} against off, {seconds:g} s windows, "
        f"{rounds} round(s), {len(dataset.buyers) // 2} buyers per copy"
    )
    try:
        for index in range(rounds):
            for mode in traced:
                for swapped in (False, True):
                    roles = (mode, "off") if swapped else ("off", mode)
                    for copy, stack, role in zip(COPIES, stacks, roles, strict=True):
                        restart(stack, cpu, copy, chosen[role])
                    sink.mode = mode
                    name = f"paired-{mode}-{index}-{int(swapped)}"
                    measured = paired_window(stacks, knobs, dataset, cpu, name, seconds)
                    figures = dict(zip(roles, measured, strict=True))
                    off, on = figures["off"], figures[mode]
                    ratio = on["cpu_ms_per_sale"]["total"] / off["cpu_ms_per_sale"]["total"]
                    pairs[mode].append({"off": off, mode: on, "ratio": round(ratio, 4)})
                    console.print(
                        f"  {mode} vs off (traced copy {COPIES[roles.index(mode)]}): "
                        f"{on['cpu_ms_per_sale']['total']} vs {off['cpu_ms_per_sale']['total']} "
                        f"ms per sale, {(ratio - 1) * 100:+.1f}%"
                    )
    finally:
        sink.server.shutdown()
    summary: dict[str, Any] = {"seconds": seconds, "rounds": rounds, "pairs": pairs}
    for mode in traced:
        ratios = [pair["ratio"] for pair in pairs[mode]]
        summary[f"overhead_{mode}_pct"] = round((statistics.median(ratios) - 1) * 100, 1)
        summary[f"overhead_{mode}_range_pct"] = [
            round((min(ratios) - 1) * 100, 1),
            round((max(ratios) - 1) * 100, 1),
        ]
        summary[f"met_{mode}"] = summary[f"overhead_{mode}_pct"] <= GOALS_PCT[mode]
    return summary


def report(summary: dict[str, Any], console: Console) -> None:
    """Each mode's median overhead, its range over the windows, and its goal."""
    for mode, goal in GOALS_PCT.items():
        if f"overhead_{mode}_pct" not in summary:
            continue
        low, high = summary[f"overhead_{mode}_range_pct"]
        verdict = "met" if summary[f"met_{mode}"] else "missed"
        console.print(
            f"{mode}: [bold]{summary[f'overhead_{mode}_pct']:+.1f}%[/] CPU per sale over off "
            f"(median of {len(summary['pairs'][mode])} paired windows, {low:+.1f}% to "
            f"{high:+.1f}%; goal <= {goal:g}%: {verdict})"
        )


def main() -> int:
    """Start two copies of the saga's services on one database, seed, compare, report."""
    knobs = Knobs()
    console = Console(highlight=False, width=110)
    knobs.results.mkdir(parents=True, exist_ok=True)
    with database(knobs, console) as url:
        stacks = tuple(
            Stack(url, knobs, knobs.results / "profiles" / copy, knobs.results / "logs" / copy)
            for copy in COPIES
        )
        for stack in stacks:
            stack.log_dir.mkdir(parents=True, exist_ok=True)
        cpu = CpuMeter(interval_s=knobs.sample_s)
        cpu.start()
        try:
            for stack in stacks:
                stack.start()
            dataset = seed(stacks[0], knobs)  # the buyers' tokens are good on both copies
            summary = compare((stacks[0], stacks[1]), knobs, dataset, cpu, console)
        finally:
            cpu.stop()
            for stack in stacks:
                stack.stop()
    (knobs.results / "tracing-paired.json").write_text(json.dumps(summary, indent=2) + "\n")
    report(summary, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
