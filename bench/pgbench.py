"""The single app's transaction in C: ``pgbench`` with ``bench/pgbench_sale.sql``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.harness import PGBENCH_SCRIPT, Dataset, Knobs, _libpq_env


def pgbench(url: str, knobs: Knobs, dataset: Dataset, log_dir: Path) -> dict[str, Any]:
    """The baseline's transaction in C: ``pgbench`` with ``bench/pgbench_sale.sql``."""
    from pgserver._commands import POSTGRES_BIN_PATH  # noqa: PLC0415

    binary = shutil.which("pgbench", path=str(POSTGRES_BIN_PATH)) or "pgbench"
    command = [
        binary,
        "-n",  # no vacuum of pgbench's own tables (we have none)
        "-f",
        str(PGBENCH_SCRIPT),
        "-c",
        str(knobs.buyers),
        "-j",
        str(min(knobs.buyers, os.cpu_count() or 1)),
        "-T",
        str(max(1, round(knobs.pgbench_s))),
        "-D",
        f"products={len(dataset.product_ids)}",
        "-D",
        f"wallets={len(dataset.customer_ids)}",
    ]
    completed = subprocess.run(
        command,
        env={**os.environ, **_libpq_env(url)},
        capture_output=True,
        text=True,
        check=False,
        timeout=knobs.pgbench_s + 60,
    )
    (log_dir / "pgbench.log").write_text(
        " ".join(command) + "\n\n" + completed.stdout + completed.stderr
    )
    if completed.returncode != 0:
        raise RuntimeError(f"pgbench failed ({completed.returncode}): {completed.stderr[-500:]}")
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", completed.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", completed.stdout)
    done = re.search(r"number of transactions actually processed: (\d+)", completed.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", completed.stdout)
    return {
        "clients": knobs.buyers,
        "duration_s": max(1, round(knobs.pgbench_s)),
        "per_s": float(tps.group(1)) if tps else None,
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "transactions": int(done.group(1)) if done else None,
        "failed": int(failed.group(1)) if failed else 0,
    }
