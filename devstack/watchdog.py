"""The launcher's watchdog: stops what the launcher started if the launcher dies unannounced.

Each child of the launcher is tied to it by the kernel (``PR_SET_PDEATHSIG``,
:func:`devstack.processes.die_with_parent`), but that reaches only direct
children: the workers a child forks, and the embedded PostgreSQL, which
``pg_ctl`` detaches, would outlive a launcher killed with SIGKILL. The
watchdog is a small separate process that reads what to guard, one line at a
time, from a pipe whose other end only the launcher holds:

- ``group <pgid>``: a process group to SIGKILL;
- ``postgres <data dir>``: an embedded server to stop (fast shutdown);
- ``release``: everything was stopped in order; exit without acting.

When the pipe ends without ``release`` (the launcher is gone, however it
died), the watchdog kills every group and stops every server, then exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: Seconds a server gets for a fast shutdown before an immediate one.
POSTGRES_GRACE_S = 5.0


class Watchdog:
    """The launcher's handle on its watchdog process."""

    def __init__(self) -> None:
        # Not tied to the launcher (it must outlive it) and in a session of its own, so
        # a Ctrl-C sent to the terminal's process group does not reach it.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack.watchdog"],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )

    def _send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        self.process.stdin.flush()

    def guard_group(self, pgid: int) -> None:
        """Kill process group ``pgid`` should the launcher die."""
        self._send(f"group {pgid}")

    def guard_postgres(self, data_dir: Path) -> None:
        """Stop the embedded server in ``data_dir`` should the launcher die."""
        self._send(f"postgres {data_dir}")

    def release(self) -> None:
        """Everything is stopped: let the watchdog exit without acting."""
        try:
            self._send("release")
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_postgres(data_dir: Path) -> None:
    """Fast-shutdown the server whose data is in ``data_dir``; immediate if it lingers."""
    pid = _postmaster_pid(data_dir)
    if pid is None:
        return
    for sig, wait_s in ((signal.SIGINT, POSTGRES_GRACE_S), (signal.SIGQUIT, POSTGRES_GRACE_S)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)


def clean_up(groups: list[int], servers: list[Path]) -> None:
    """Kill every process group, then stop every server."""
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for data_dir in servers:
        stop_postgres(data_dir)


def main() -> None:
    """Read what to guard until ``release`` (exit) or the end of input (clean up)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: list[int] = []
    servers: list[Path] = []
    for line in sys.stdin:
        kind, _, value = line.strip().partition(" ")
        if kind == "release":
            return
        if kind == "group":
            groups.append(int(value))
        elif kind == "postgres":
            servers.append(Path(value))
    clean_up(groups, servers)


if __name__ == "__main__":
    main()
