"""CPU time spent per phase by each part of the system (services, PostgreSQL, the client).

On a small, possibly shared machine, sales per second depend on what else
runs; the CPU time a sale costs each process does much less. :class:`CpuMeter`
follows groups of processes (a gunicorn master and its workers, the
PostgreSQL postmaster and its backends, the benchmark driver and its
children such as pgbench) and, every ``interval_s``, records each process's
user + system CPU seconds. A phase's CPU per group is the sum over its
processes of (last reading in the phase minus reading at the phase's start, or 0
for a process born during the phase). A process that exits loses at most its
last interval (pgbench's backends, for instance).

Divided by the sales a phase completed, this is "CPU ms per sale" per
component: on 2 cores, 2,000 ms of CPU per second is the ceiling of the
whole system, whatever the software.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psutil

PidSource = Callable[[], list[int]]


class _Descendants:
    """``psutil.Process.children`` scans all of ``/proc``; remember answers for a moment."""

    def __init__(self, ttl_s: float = 2.0) -> None:
        self.ttl_s = ttl_s
        self._cache: dict[tuple[int, bool], tuple[float, list[int]]] = {}
        self._lock = threading.Lock()

    def __call__(self, pid: int, *, recursive: bool) -> list[int]:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get((pid, recursive))
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        try:
            found = [c.pid for c in psutil.Process(pid).children(recursive=recursive)]
        except psutil.Error:
            found = []
        with self._lock:
            self._cache[(pid, recursive)] = (now, found)
        return found


#: Children of a process, cached for 2 s (a new gunicorn worker or database backend is
#: seen within 2 s; its CPU is then counted from its birth, so nothing is lost).
descendants = _Descendants()


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (empty if it is gone)."""
    if not psutil.pid_exists(pid):
        return []
    return [pid, *descendants(pid, recursive=True)]


class CpuMeter(threading.Thread):
    """Samples the CPU seconds of named groups of processes."""

    def __init__(self, interval_s: float = 0.5) -> None:
        super().__init__(name="cpu-meter", daemon=True)
        self.interval_s = interval_s
        self.groups: dict[str, PidSource] = {}
        self.latest: dict[int, tuple[str, float]] = {}  # pid -> (group, cpu seconds)
        self._processes: dict[int, psutil.Process] = {}
        self.marks: dict[str, dict[int, tuple[str, float]]] = {}
        self.results: dict[str, dict[str, float]] = {}
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def watch(self, group: str, pids: PidSource) -> None:
        """Account the processes ``pids()`` returns (called at every sample) to ``group``."""
        with self._lock:
            self.groups[group] = pids

    def sample(self) -> None:
        """Read every watched process's CPU time now."""
        with self._lock:
            # "client" (the driver and its children) is read last: it excludes what is
            # already accounted to another group (the services are the driver's children).
            groups = sorted(self.groups.items(), key=lambda item: item[0] == "client")
        seen: set[int] = set()
        for group, source in groups:
            for pid in source():
                if pid in seen:
                    continue
                seen.add(pid)
                try:
                    process = self._processes.get(pid)
                    if process is None:
                        process = self._processes[pid] = psutil.Process(pid)
                    times = process.cpu_times()
                except psutil.Error:
                    self._processes.pop(pid, None)
                    continue
                with self._lock:
                    self.latest[pid] = (group, times.user + times.system)

    def run(self) -> None:
        """Sample until stopped."""
        while not self._halt.is_set():
            began = time.monotonic()
            self.sample()
            self._halt.wait(max(0.0, self.interval_s - (time.monotonic() - began)))

    def stop(self) -> None:
        """Stop sampling."""
        self._halt.set()
        self.join(timeout=5)

    def begin(self, phase: str) -> None:
        """Remember every process's CPU time at the start of ``phase``."""
        self.sample()
        with self._lock:
            self.marks[phase] = dict(self.latest)

    def end(self, phase: str) -> dict[str, float]:
        """CPU seconds each group spent since :meth:`begin` of ``phase``."""
        self.sample()
        with self._lock:
            start = self.marks.pop(phase, {})
            spent: dict[str, float] = {}
            for pid, (group, seconds) in self.latest.items():
                before = start.get(pid, (group, 0.0))[1]
                if seconds > before:
                    spent[group] = spent.get(group, 0.0) + seconds - before
        self.results[phase] = spent
        return spent

    @staticmethod
    def per_sale(spent: dict[str, float], sales: int) -> dict[str, float]:
        """CPU milliseconds per sale, per group and in total."""
        if not sales:
            return {}
        result = {group: round(seconds * 1000 / sales, 2) for group, seconds in spent.items()}
        result["total"] = round(sum(spent.values()) * 1000 / sales, 2)
        return result
