"""cProfile of gunicorn workers under load: switch on, switch off, merge, list.

How it works (the worker side is :mod:`bench.gunicorn_profile`):

1. the services run under ``gunicorn -c bench/gunicorn_profile.py`` with
   ``SHOP_PROFILE_DIR=<dir>/<service>`` and ``SHOP_PROFILE_NAME=<service>``;
2. :func:`start` creates ``<dir>/<service>/active``: every worker starts
   profiling each request on the thread that serves it;
3. the load runs;
4. :func:`stop` removes the file and waits until every worker has written
   ``<service>-<pid>.prof`` (and its ``.done`` marker);
5. :func:`merge` adds the workers' profiles into ``<service>-<label>.prof``
   (open it with ``python -m pstats``, snakeviz, ...) and writes
   ``<service>-<label>-top25.txt``: the 25 functions with the highest
   cumulative time, then the 25 with the highest own time.

cProfile slows Python code down (every call is timed), so the profiled run
is a separate, shorter window after the measured one; its throughput is not
reported as a result.
"""

from __future__ import annotations

import io
import pstats
import time
from collections.abc import Iterable
from pathlib import Path

ACTIVE_FILE = "active"


def directory(root: Path, service: str) -> Path:
    """Where ``service``'s workers write their profiles (created)."""
    path = root / service
    path.mkdir(parents=True, exist_ok=True)
    return path


def start(root: Path, services: Iterable[str]) -> None:
    """Switch profiling on in every worker of ``services``."""
    for service in services:
        path = directory(root, service)
        for stale in [*path.glob("*.prof"), *path.glob("*.done")]:
            stale.unlink()
        (path / ACTIVE_FILE).touch()


def stop(root: Path, workers: dict[str, int], timeout_s: float = 20.0) -> dict[str, int]:
    """Switch profiling off; wait for each service's ``workers[service]`` dumps.

    Returns how many workers of each service wrote their profile in time.
    """
    for service in workers:
        (directory(root, service) / ACTIVE_FILE).unlink(missing_ok=True)
    deadline = time.monotonic() + timeout_s
    done: dict[str, int] = {}
    while time.monotonic() < deadline:
        done = {s: len(list(directory(root, s).glob("*.done"))) for s in workers}
        if all(done[s] >= n for s, n in workers.items()):
            break
        time.sleep(0.2)
    return done


def merge(
    root: Path, service: str, out_dir: Path, label: str, top: int = 25
) -> tuple[Path, Path] | None:
    """Merge ``service``'s worker profiles into ``<service>-<label>.prof`` and a top listing."""
    files = sorted(directory(root, service).glob("*.prof"))
    if not files:
        return None
    stats = pstats.Stats(str(files[0]))
    for extra in files[1:]:
        stats.add(str(extra))
    prof_path = out_dir / f"{service}-{label}.prof"
    stats.dump_stats(str(prof_path))
    listing = io.StringIO()
    listing.write(
        f"cProfile of the {service} service under load: {len(files)} worker(s) merged, "
        f"{stats.total_calls:,} calls, {stats.total_tt:.2f} s of profiled time "
        "(request-handling threads only).\n"
        "Caveat: cProfile adds a fixed cost to every call, so code made of many tiny calls\n"
        "(per-character loops, os.environ lookups) looks far costlier than it is. Confirm\n"
        "with a sampling profiler (py-spy) or an A/B timing before optimising\n"
        "(bench/README.md, 'Reading the profiles').\n\n"
    )
    for order in ("cumulative", "tottime"):
        listing.write(f"=== top {top} by {order} time ===\n")
        view = pstats.Stats(str(prof_path), stream=listing)
        view.strip_dirs().sort_stats(order).print_stats(top)
    text_path = out_dir / f"{service}-{label}-top{top}.txt"
    text_path.write_text(listing.getvalue())
    return prof_path, text_path


def request_count(prof_path: Path, function: str = "handle") -> int:
    """How many requests a merged profile saw (calls of the worker's ``handle``)."""
    stats = pstats.Stats(str(prof_path))
    calls = [
        value[1]  # primitive call count
        for (filename, _line, name), value in stats.stats.items()  # type: ignore[attr-defined]
        if name == function and filename.endswith("gthread.py")
    ]
    return max(calls, default=0)
