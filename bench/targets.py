"""The targets a benchmark run is judged by, and the verdict: each one met or missed.

``make bench`` reports every target and exits 0 unless a phase failed (an
error, or an audit that found money or stock out of balance): a target missed
on a noisy machine is a figure to read, not a failed run. ``make bench-check``
(``--strict``, or ``BENCH_STRICT=1``) also exits 1 when a target is missed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from bench import events_phase
from bench.harness import SERVICES

TARGETS = {
    "saga_vs_monolith": 0.5,  # saga sales/s >= 0.5 x the single app's
    "saga_p99_ms": 100.0,
    "peak_rss_mib": 100.0,
    "rss_growth_pct": 10.0,
    "cpu_lines_vs_one_line": 1.5,  # CPU per 3-line order <= 1.5 x CPU per 1-line order
    "lines_p99_vs_p50": 3.0,  # several-line orders: p99 <= 3 x their p50
    "tracing_sampled_pct": 10.0,  # CPU per sale, 10 % of traces sampled, over tracing off
    "tracing_unsampled_pct": 3.0,  # CPU per sale, no trace sampled, over tracing off
}


def targets(summary: dict[str, Any]) -> dict[str, Any]:
    """Each target's goal, the run's value and whether it was met (``None``: not measured)."""
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
    several = summary.get("saga_lines") or {}
    lines_tail = (
        round(several["p99_ms"] / several["p50_ms"], 2)
        if several.get("p99_ms") and several.get("p50_ms")
        else None
    )
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
        "lines_p99_vs_p50": {
            "goal": f"<= 3 ({lines}-line orders: p99 / p50)",
            "value": lines_tail,
            "met": check(lines_tail, TARGETS["lines_p99_vs_p50"], at_least=False),
        },
        "tracing_sampled_pct": {
            "goal": "<= 10 (CPU per sale, 10 % of traces sampled, against tracing off)",
            "value": tracing.get("overhead_sampled_pct"),
            "met": check(
                tracing.get("overhead_sampled_pct"),
                TARGETS["tracing_sampled_pct"],
                at_least=False,
            ),
        },
        "tracing_unsampled_pct": {
            "goal": "<= 3 (CPU per sale, no trace sampled, against tracing off)",
            "value": tracing.get("overhead_unsampled_pct"),
            "met": check(
                tracing.get("overhead_unsampled_pct"),
                TARGETS["tracing_unsampled_pct"],
                at_least=False,
            ),
        },
        **events_phase.targets(summary),
        "audit": {"goal": "OK", "value": None, "met": summary["audit_ok"]},
    }


def strict(argv: Sequence[str]) -> bool:
    """Whether a missed target should fail the run (``--strict`` or ``BENCH_STRICT=1``)."""
    return "--strict" in argv or os.environ.get("BENCH_STRICT") == "1"


def missed(checks: dict[str, dict[str, Any]]) -> list[str]:
    """The targets a run measured and did not meet."""
    return [name for name, item in checks.items() if item["met"] is False]


def exit_status(*, phases_ok: bool, missed_targets: Sequence[str], strict_run: bool) -> int:
    """0 unless a phase failed, or (strict) a target was missed."""
    return 1 if not phases_ok or (strict_run and missed_targets) else 0


# --- the run -----------------------------------------------------------------------------------
