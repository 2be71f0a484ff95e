"""The whole test suite as ``make test`` runs it: ``python -m tests.suite [--workers N]``.

Two pytest sessions run side by side:

- the fault suite (``tests/resilience``), one test at a time. Its tests freeze
  or kill a dependency for up to 15 s and mostly wait; alone, it left half of
  the machine's CPU idle for two minutes;
- every other test, on ``--workers`` xdist workers, file by file.

The fault suite's output is kept in a file and printed when both are done, so
the two do not interleave. Each session picks its ports from blocks of its own
(:mod:`tests.support.ports`). The exit status is 0 only if both passed; Ctrl-C
or SIGTERM stops both.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULT_SUITE = "tests/resilience"
#: The fault suite's port blocks (:mod:`tests.support.ports`), apart from the other session's.
FAULT_SUITE_PORT_BASE = "24000"
#: The other tests' niceness: the fault suite, which times the services' answers, goes first
#: for the CPU, as on a quiet machine; the others only wait longer when both want it.
OTHERS_NICENESS = 5


def _pytest(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "--dist", "loadfile", *args]


def main(argv: list[str] | None = None) -> int:
    """Run both sessions; print the fault suite's report after the others'; 0 if both passed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--workers", type=int, default=3, help="xdist workers of the other tests")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryFile() as fault_log:
        faults = subprocess.Popen(
            _pytest("-n", "1", "--durations=10", FAULT_SUITE),
            cwd=ROOT,
            stdout=fault_log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SHOP_TEST_PORT_BASE": FAULT_SUITE_PORT_BASE},
        )
        others = subprocess.Popen(
            _pytest("-n", str(args.workers), "--durations=25", f"--ignore={FAULT_SUITE}"),
            cwd=ROOT,
            preexec_fn=lambda: os.nice(OTHERS_NICENESS),  # noqa: PLW1509 (no threads here)
        )
        _forward_sigterm(others, faults)
        try:
            others_status = others.wait()
            faults_status = faults.wait()
        except KeyboardInterrupt:  # the terminal sent SIGINT to both sessions too
            for session in (others, faults):
                session.wait()
            return 130
        fault_log.seek(0)
        print(f"\n{'=' * 30} the fault suite ({FAULT_SUITE}) {'=' * 30}", flush=True)
        sys.stdout.buffer.write(fault_log.read())
    print(f"\nboth sessions done in {time.monotonic() - started:.0f} s", flush=True)
    return others_status or faults_status


def _forward_sigterm(*sessions: subprocess.Popen[bytes]) -> None:
    """Pass a SIGTERM (a CI job cancelled, ``kill``) on to both sessions: none runs orphaned."""

    def forward(signum: int, _frame: object) -> None:
        for session in sessions:
            if session.poll() is None:
                session.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)


if __name__ == "__main__":
    sys.exit(main())
