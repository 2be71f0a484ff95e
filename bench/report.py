"""The run's figures as one table, then its targets."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def fmt(value: Any, unit: str = "", digits: int = 1) -> str:
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
        latency = " / ".join(fmt(figures.get(k)) for k in ("p50_ms", "p95_ms", "p99_ms"))
        return [
            (f"{label}: sales/s", fmt(figures.get("per_s"))),
            (f"{label}: p50 / p95 / p99 ms", latency),
            (f"{label}: errors", fmt(figures.get("errors"))),
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
        ("pgbench: sales/s", fmt(summary.get("pgbench_sales_per_s"))),
        ("saga / single app", fmt(ratios.get("saga_vs_monolith"), digits=3)),
        (
            "saga / single app on the services' stack",
            fmt(ratios.get("saga_vs_monolith_full"), digits=3),
        ),
        (
            "single app on the stack / single app",
            fmt(ratios.get("monolith_full_vs_monolith"), digits=3),
        ),
        ("saga / pgbench", fmt(ratios.get("saga_vs_pgbench"), digits=3)),
        ("single app / pgbench", fmt(ratios.get("monolith_vs_pgbench"), digits=3)),
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
                fmt(ratios["cpu_lines_vs_one_line"], digits=2),
            )
        )
    for service, peak in summary["peak_rss_mib"].items():
        rows.append((f"peak RSS {service} (MiB, worst worker)", fmt(peak)))
    rows += [
        ("RSS growth over the replay (worst worker)", fmt(summary["rss_growth_pct"], " %", 2)),
        (
            "RSS growth saga start -> replay end (worst)",
            fmt(summary.get("rss_growth_run_pct"), " %", 2),
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
        targets.add_row(f"{name} {item['goal']}", fmt(item["value"], digits=2), met)
    console.print(targets)
