"""Memory of gunicorn workers over a run: sampled with memory_profiler, plotted with matplotlib.

:class:`RssSampler` is a thread that, every ``interval_s``, finds each
service's workers (the children of its gunicorn master, so a restarted worker
is picked up) and records each one's RSS with
``memory_profiler.memory_usage(proc=pid)`` (the psutil backend: resident set
size in MiB). Phases (``saga``, ``replay``, ...) are marked on the timeline.

Figures it gives:

* peak RSS per worker: the higher of the sampled maximum and the kernel's
  own high-water mark (``VmHWM`` in ``/proc/<pid>/status``, read before the
  workers stop), so a spike between two samples is not missed;
* RSS growth over a phase, per worker: the RSS *floor* (10th percentile of the
  samples) of the phase's last ``window_s`` seconds against its first ``window_s``
  seconds. A leak raises the floor; a transient allocation (a 19 MiB password
  hash in customers, freed at once) does not, and must not count as growth;
* a PNG of RSS over time per worker with the phases shaded (skipped, with a
  message, when matplotlib is not installed).
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from memory_profiler import memory_usage

from bench.cpu import descendants


@dataclass
class Sample:
    """One RSS reading of one worker."""

    t: float  # seconds since the sampler started
    service: str
    pid: int
    mib: float


def floor(values: list[float]) -> float:
    """The 10th percentile of ``values``: resident memory between transient allocations."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[0]


class RssSampler(threading.Thread):
    """Samples the RSS of every worker of the gunicorn masters it watches."""

    def __init__(self, interval_s: float = 0.5) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.interval_s = interval_s
        self.masters: dict[str, int] = {}  # service -> gunicorn master pid
        self.samples: list[Sample] = []
        self.phases: list[tuple[str, float, float | None]] = []
        self.hwm_mib: dict[int, float] = {}  # worker pid -> VmHWM
        self.worker_service: dict[int, str] = {}
        self.frozen_at: float | None = None  # peaks count only what came before this
        self._frozen_hwm: dict[int, float] = {}
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.t0 = time.monotonic()

    def now(self) -> float:
        """Seconds since the sampler started."""
        return time.monotonic() - self.t0

    def watch(self, service: str, master_pid: int) -> None:
        """Also sample the workers of ``service`` (gunicorn master ``master_pid``)."""
        with self._lock:
            self.masters[service] = master_pid

    def forget(self, service: str) -> None:
        """Stop sampling ``service`` (its HWM readings are kept)."""
        self.read_hwm([service])
        with self._lock:
            self.masters.pop(service, None)

    def begin(self, phase: str) -> None:
        """Mark the start of ``phase`` on the timeline."""
        with self._lock:
            self.phases.append((phase, self.now(), None))

    def end(self, phase: str) -> None:
        """Mark the end of ``phase``."""
        with self._lock:
            for i, (name, start, stop) in enumerate(self.phases):
                if name == phase and stop is None:
                    self.phases[i] = (name, start, self.now())

    def phase(self, name: str) -> tuple[float, float] | None:
        """``(start, end)`` of a finished phase."""
        for phase, start, stop in self.phases:
            if phase == name and stop is not None:
                return start, stop
        return None

    def workers(self, service: str) -> list[int]:
        """PIDs of the live workers of ``service``."""
        master = self.masters.get(service)
        if master is None:
            return []
        return descendants(master, recursive=False)

    def sample_once(self) -> None:
        """Record every worker's RSS now."""
        with self._lock:
            services = list(self.masters)
        for service in services:
            for pid in self.workers(service):
                try:
                    mib = memory_usage(proc=pid, interval=0, max_iterations=1, backend="psutil")[0]
                except (psutil.Error, ProcessLookupError, IndexError):
                    continue
                self.worker_service[pid] = service
                self.samples.append(Sample(self.now(), service, pid, float(mib)))

    def run(self) -> None:
        """Sample until :meth:`stop` is called."""
        while not self._halt.is_set():
            began = time.monotonic()
            self.sample_once()
            self._halt.wait(max(0.0, self.interval_s - (time.monotonic() - began)))

    def stop(self) -> None:
        """Stop sampling (read the high-water marks first, while the workers live)."""
        self.read_hwm()
        self._halt.set()
        self.join(timeout=5)

    def read_hwm(self, services: list[str] | None = None) -> None:
        """Read ``VmHWM`` (peak RSS, kernel-kept) of the live workers of ``services``."""
        for service in services or list(self.masters):
            for pid in self.workers(service):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.hwm_mib[pid] = int(line.split()[1]) / 1024
                        self.worker_service[pid] = service

    def freeze_peaks(self) -> None:
        """Peaks are what happened until now: later phases (the profiled ones) do not count.

        The kernel's high-water marks are read now and kept; samples taken later
        still appear in the plots but not in :meth:`peak_by_worker`.
        """
        self.read_hwm()
        self.frozen_at = self.now()
        self._frozen_hwm = dict(self.hwm_mib)

    # --- figures ---------------------------------------------------------------------------

    def peak_by_worker(self) -> dict[str, dict[int, float]]:
        """``{service: {pid: peak MiB}}``: sampled maximum or VmHWM, whichever is higher."""
        peaks: dict[str, dict[int, float]] = {}
        for sample in self.samples:
            if self.frozen_at is not None and sample.t > self.frozen_at:
                continue
            worker = peaks.setdefault(sample.service, {})
            worker[sample.pid] = max(worker.get(sample.pid, 0.0), sample.mib)
        for pid, hwm in (self._frozen_hwm if self.frozen_at is not None else self.hwm_mib).items():
            service = self.worker_service.get(pid)
            if service is not None:
                worker = peaks.setdefault(service, {})
                worker[pid] = max(worker.get(pid, 0.0), hwm)
        return peaks

    def growth(self, phase: str, window_s: float = 10.0) -> dict[str, dict[int, dict[str, float]]]:
        """Per worker: RSS floor in the first and last ``window_s`` of ``phase``; the growth."""
        span = self.phase(phase)
        if span is None:
            return {}
        start, stop = span
        window = min(window_s, (stop - start) / 4)
        result: dict[str, dict[int, dict[str, float]]] = {}
        by_worker: dict[tuple[str, int], list[Sample]] = {}
        for sample in self.samples:
            if start <= sample.t <= stop:
                by_worker.setdefault((sample.service, sample.pid), []).append(sample)
        for (service, pid), samples in by_worker.items():
            first = [s.mib for s in samples if s.t <= start + window]
            last = [s.mib for s in samples if s.t >= stop - window]
            if not first or not last:
                continue
            begin, end = floor(first), floor(last)
            result.setdefault(service, {})[pid] = {
                "start_mib": round(begin, 1),
                "end_mib": round(end, 1),
                "growth_pct": round((end / begin - 1) * 100, 2),
            }
        return result

    def plot(self, path: Path, title: str, only: str | None = None) -> str | None:
        """Draw RSS over time per worker (only phase ``only`` if given); ``None`` if drawn."""
        try:
            import matplotlib  # noqa: PLC0415 (optional: only needed for the picture)

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt  # noqa: PLC0415
        except ImportError:
            return (
                "matplotlib is not installed: no memory plot (pip install matplotlib; "
                "it belongs in the dev extra)"
            )
        span = self.phase(only) if only else None
        fig, ax = plt.subplots(figsize=(11, 5.5))
        series: dict[tuple[str, int], list[Sample]] = {}
        for sample in self.samples:
            if span is None or span[0] <= sample.t <= span[1]:
                series.setdefault((sample.service, sample.pid), []).append(sample)
        colours: dict[str, Any] = {}
        palette = plt.get_cmap("tab10")
        for (service, pid), samples in sorted(series.items()):
            colour = colours.setdefault(service, palette(len(colours)))
            ax.plot(
                [s.t for s in samples],
                [s.mib for s in samples],
                color=colour,
                linewidth=1.2,
                label=f"{service} worker {pid}",
            )
        for i, (name, start, stop) in enumerate(self.phases):
            if stop is None or (span is not None and name != only):
                continue
            ax.axvspan(start, stop, color="grey", alpha=0.08 if i % 2 else 0.16)
            ax.text(start, 1.0, f" {name}", transform=ax.get_xaxis_transform(), va="top")
        ax.set_xlabel("seconds since the services started")
        ax.set_ylabel("RSS (MiB)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="lower right")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return None
