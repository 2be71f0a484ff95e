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
3. **events on vs off** (:mod:`bench.events_phase`, first while the outboxes hold
   little): the purchase window with a broker, the relays and every consumer
   running, then without; consumer CPU per event, commit-to-effect lag, the relay
   alone and the broker's peak RSS (``BENCH_EVENTS_S=0`` skips it);
   **saga**: ``BENCH_BUYERS`` closed-loop buyers ``POST /sales`` (one-line orders)
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

Every target is reported as met or missed (:mod:`bench.targets`). Exit status:
0 when every phase completed and the audit passed, 1 otherwise; with
``--strict`` (``make bench-check``) also 1 when a target was missed.

The run is split by job: :mod:`bench.harness` (knobs, database, services,
dataset), :mod:`bench.phases` (what each phase measures), :mod:`bench.pgbench`,
:mod:`bench.audit`, :mod:`bench.report` and :mod:`bench.targets`; this module
only runs the phases in order.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from bench import batching_bench, events_phase, tracing_bench  # noqa: E402
from bench.harness import Knobs, database  # noqa: E402
from bench.phases import Bench  # noqa: E402
from bench.report import print_summary  # noqa: E402
from bench.targets import exit_status, missed, strict, targets  # noqa: E402


def _prepare_results(results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    for pattern in ("*.prof", "*-top25.txt", "*.png", "memory-samples.csv", "summary.json"):
        for stale in results.glob(pattern):
            stale.unlink()
    shutil.rmtree(results / "logs", ignore_errors=True)
    (results / "logs").mkdir()


def main(argv: list[str] | None = None) -> int:
    """Run every phase and write ``summary.json``; the exit status of :func:`exit_status`.

    ``BENCH_TRACING=1`` runs only the tracing on/off comparison (bench/tracing_bench.py);
    ``BENCH_ONLY=events`` only the events on/off phase (bench/events_phase.py).
    """
    strict_run = strict(sys.argv[1:] if argv is None else argv)
    if os.environ.get("BENCH_TRACING") == "1":
        return tracing_bench.main()
    if os.environ.get("BENCH_ONLY") == "events":
        return events_phase.main(strict_run)
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
        bench = Bench(knobs, console, url, Path(profile_tmp))
        try:
            bench.start(started)
            # First, while the outboxes hold little: events on, then off (events_phase).
            events_phase.run(bench)
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
    summary["targets"] = targets(summary)
    (knobs.results / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print_summary(summary, console)
    batching_bench.print_table(summary, console)
    events_phase.print_table(summary, console)
    console.print(
        f"results in {knobs.results} ({summary['elapsed_s']:.0f} s); load average "
        f"{summary['machine']['load_average_start']} -> {summary['machine']['load_average_end']}"
    )
    not_met = missed(summary["targets"])
    console.print(
        "targets: all met"
        if not not_met
        else f"targets missed: {', '.join(not_met)}"
        + ("" if strict_run else " (a report, not a failure; make bench-check fails on them)")
    )
    return exit_status(
        phases_ok=bool(summary.get("audit_ok")), missed_targets=not_met, strict_run=strict_run
    )


if __name__ == "__main__":
    sys.exit(main())
