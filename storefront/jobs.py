"""Runs ``python -m seeder populate | replay | audit`` for the console, one run at a time.

The run is a child process of this storefront process (its output read line
by line by a thread), so the storefront serves with one gunicorn worker
(threads for concurrency): every request sees the same run. The seeder gets
the service URLs and the admin credentials of the storefront's own
configuration, exactly as ``make run``'s seeder does.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from shopkit.config import PROJECT_ROOT, Settings

#: Lines of output kept for the page.
KEEP_LINES = 400
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: The start of the replay's status line (``replay: 1,234 attempts, ...``).
_REPLAY_STATUS = re.compile(r"replay: ([\d,]+) attempts")


class JobBusy(Exception):
    """Another run is still going."""


@dataclass
class Job:
    """One seeder run: its command, output so far and, once ended, its exit code."""

    kind: str
    args: list[str]
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    exit_code: int | None = None
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=KEEP_LINES))
    target: int | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """True until the process has exited."""
        return self.exit_code is None

    @property
    def elapsed_s(self) -> float:
        """Seconds since the start (until the end once it ended)."""
        return (self.ended_at or time.time()) - self.started_at

    @property
    def command(self) -> str:
        """The command line as a person would type it."""
        return " ".join(["python -m seeder", self.kind, *self.args])

    @property
    def output(self) -> str:
        """The output so far."""
        return "\n".join(self.lines)

    def progress(self) -> tuple[int, int] | None:
        """``(done, of)`` for a replay of a known number of purchases, from its status lines."""
        if self.kind != "replay" or not self.target:
            return None
        done = 0
        for line in self.lines:
            match = _REPLAY_STATUS.search(line)
            if match:
                done = int(match.group(1).replace(",", ""))
        if not self.running and self.exit_code == 0:
            done = self.target
        return min(done, self.target), self.target


class JobRunner:
    """Starts one seeder command at a time and keeps the latest run to show."""

    def __init__(self, settings: Settings, python: str = sys.executable) -> None:
        self.settings = settings
        self.python = python
        self._lock = threading.Lock()
        self.current: Job | None = None

    def _env(self) -> Mapping[str, str]:
        settings = self.settings
        return {
            **os.environ,
            "CUSTOMERS_URL": settings.customers_url,
            "INVENTORY_URL": settings.inventory_url,
            "SALES_URL": settings.sales_url,
            "REVIEWS_URL": settings.reviews_url,
            "NOTIFICATIONS_URL": settings.notifications_url,
            "ADMIN_USERNAME": settings.admin_username,
            "ADMIN_PASSWORD": settings.admin_password,
            "COLUMNS": "110",
            "NO_COLOR": "1",
            "TERM": "dumb",
            "PYTHONUNBUFFERED": "1",
        }

    def start(self, kind: str, args: list[str], target: int | None = None) -> Job:
        """Start ``python -m seeder <kind> <args>``; :class:`JobBusy` if one is running."""
        with self._lock:
            if self.current is not None and self.current.running:
                raise JobBusy(self.current.command)
            job = Job(kind=kind, args=args, target=target)
            job.process = subprocess.Popen(  # noqa: S603 (fixed program, validated numbers)
                [self.python, "-m", "seeder", kind, *args],
                cwd=PROJECT_ROOT,
                env=dict(self._env()),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.current = job
        threading.Thread(target=self._follow, args=(job,), daemon=True).start()
        return job

    def stop(self) -> None:
        """Ask the current run to stop (SIGINT: a replay prints its summary and exits)."""
        job = self.current
        if job is not None and job.running and job.process is not None:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.killpg(job.process.pid, signal.SIGINT)

    @staticmethod
    def _follow(job: Job) -> None:
        process = job.process
        assert process is not None and process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            text = _ANSI.sub("", raw.decode(errors="replace")).rstrip()
            if text:
                job.lines.append(text)
        code = process.wait()
        job.ended_at = time.time()
        job.exit_code = code
