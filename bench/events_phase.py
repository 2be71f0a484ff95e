"""Events on vs off under the purchase load (issue 26, "Performance"): a phase of ``make bench``.

It runs first, right after the dataset is seeded, so that little waits in the
outboxes (the services write their rows with events off too: no switch turns
that off, and the rest of the run has no broker). An embedded broker starts,
every service restarts with ``EVENTS_URL`` (the relays of the emitting
services, and any consumer a service runs in its workers), the notifications
worker starts with a local mail sink, and once the earlier events are
published, applied and mailed, ``BENCH_BUYERS`` buyers ``POST /sales`` for
``BENCH_EVENTS_S``, with every consumer on the same machine. Then the worker
stops, the services restart without ``EVENTS_URL``, and the same window runs
again with events off. Figures:

* **throughput** on / off (target ≥ 0.85) and the **purchase path's CPU per
  sale** on / off (target ≤ 1.15): the processes of sales, customers and
  inventory (their relay threads included) and the PostgreSQL backends whose
  ``application_name`` is one of theirs (``sales``, ``sales-relay`` ...);
* **consumer CPU per event** (target ≤ 0.3 ms): the notifications worker's
  consumer thread plus its PostgreSQL backend, per event its group applied in
  the window; the mail sender (the worker's main thread, and its own backend) is
  reported beside it, and so is reviews' group (its workers serve nothing else
  meanwhile);
* **end-to-end lag**, commit to effect, p50 ≤ 50 ms and p99 ≤ 250 ms: the
  notifications inbox's ``applied_at`` minus the outbox row's ``created_at``
  (both ``now()`` of their transactions: the producer's start, the consumer's
  start), for every event of the window;
* **the relay alone** (target ≥ 5,000 events/s): ``BENCH_EVENTS_RELAY`` rows
  written into an outbox of their own, then one relay publishing them in
  pipelined batches of 500, timed;
* **the broker's peak RSS** (``VmHWM``) at the end.

``BENCH_EVENTS_S=0`` skips the phase; ``BENCH_ONLY=events`` runs the stack,
the dataset and this phase alone (``make bench-events``). The services go back
to no events afterwards, so the later phases measure what they always did.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from rich.console import Console
from rich.table import Table
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.orm import sessionmaker

from bench import harness
from bench.cpu import CpuMeter, tree
from bench.events_bench import drain, emit_backlog, peak_rss_mib
from bench.harness import SAGA_SERVICES, SERVICES, env_float, env_int, postmaster_pid
from bench.loadgen import run_load
from devstack import mailsink
from devstack.broker import Broker, throwaway_broker
from devstack.processes import WorkerProcess
from notifications_service.worker import APPLICATION_NAME as WORKER_APPLICATION_NAME
from notifications_service.worker import MAILER_APPLICATION_NAME
from shopkit.events.outbox import outbox_table
from shopkit.events.relay import Relay, RelaySettings, broker_client

if TYPE_CHECKING:
    from bench.harness import BenchRun

#: The purchase path's services (their processes, and their backends by application_name).
PURCHASE_SERVICES = SAGA_SERVICES
#: The outboxes whose events must be published before the on window (all the emitters').
OUTBOXES = ("sales.outbox", "customers.outbox", "inventory.outbox")
RELAY_SCHEMA = "bench_relay"
TARGETS = {
    "events_throughput_ratio": 0.85,  # sales/s events on >= 0.85 x off
    "events_cpu_per_sale_ratio": 1.15,  # purchase path CPU per sale on <= 1.15 x off
    "consumer_cpu_ms_per_event": 0.3,
    "events_lag_p50_ms": 50.0,
    "events_lag_p99_ms": 250.0,
    "relay_events_per_s": 5000.0,
}


@dataclass
class Knobs:
    """The phase's settings (environment variables, see bench/README.md)."""

    seconds: float = field(default_factory=lambda: env_float("BENCH_EVENTS_S", 10))
    relay_events: int = field(default_factory=lambda: env_int("BENCH_EVENTS_RELAY", 20_000))


class Backends:
    """PostgreSQL backend pids by ``application_name``, read from ``pg_stat_activity`` (cached
    for a second: the CPU meter asks at every sample)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, pool_size=1, connect_args={"application_name": "bench"})
        self._cache: tuple[float, dict[int, str]] = (0.0, {})
        self._lock = threading.Lock()

    def names(self) -> dict[int, str]:
        """``pid → application_name`` of every backend now."""
        with self._lock:
            at, found = self._cache
            if time.monotonic() - at < 1.0:
                return found
            with self.engine.connect() as conn:
                rows = conn.execute(text("SELECT pid, application_name FROM pg_stat_activity"))
                found = {int(pid): str(name or "") for pid, name in rows}
            self._cache = (time.monotonic(), found)
            return found

    def matching(self, wanted: Callable[[str], bool]) -> Callable[[], list[int]]:
        """A pid source for :class:`CpuMeter`: the backends whose name ``wanted`` accepts."""
        return lambda: [pid for pid, name in self.names().items() if wanted(name)]

    def dispose(self) -> None:
        """Close the connection."""
        self.engine.dispose()


def _purchase_backend(name: str) -> bool:
    """The purchase path's services and their relays (threads of their processes)."""
    return name in PURCHASE_SERVICES or name in {f"{s}-relay" for s in PURCHASE_SERVICES}


def _meter(bench: BenchRun, backends: Backends, worker_pid: int | None) -> CpuMeter:
    """A meter of its own: the purchase path (``purchase <service>``, ``purchase postgres``),
    the other services, the worker and its backends, the rest of PostgreSQL, the client."""
    meter = CpuMeter(interval_s=bench.knobs.sample_s)
    for service, pid in bench.stack.master_pids().items():
        group = f"purchase {service}" if service in PURCHASE_SERVICES else service
        meter.watch(group, lambda pid=pid: tree(pid))  # type: ignore[misc]
    meter.watch("purchase postgres", backends.matching(_purchase_backend))
    meter.watch("postgres worker", backends.matching(lambda name: name == WORKER_APPLICATION_NAME))
    meter.watch("postgres mailer", backends.matching(lambda name: name == MAILER_APPLICATION_NAME))
    meter.watch("postgres reviews", backends.matching(lambda name: name.startswith("reviews")))
    if worker_pid is not None:
        meter.watch("worker", lambda: tree(worker_pid))
    postmaster = postmaster_pid(bench.stack.url)
    if postmaster is not None:
        meter.watch("postgres other", lambda: tree(postmaster))
    meter.watch("client", lambda: tree(os.getpid()))
    return meter


def _thread_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of ``pid`` (empty once it is gone)."""
    try:
        return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}
    except psutil.Error:
        return {}


def _scalar(engine: Any, query: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(query), params).scalar()


#: The lag of each event the notifications group applied, commit to effect, in ms, and its two
#: halves: to the relay's marking (``published_at``, right after its ``XADD``), then to the effect.
LAG_QUERY = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_ms),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY lag_ms),
       max(lag_ms), count(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY to_published_ms),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_ms - to_published_ms)
FROM (
    SELECT extract(epoch FROM i.applied_at - o.created_at) * 1000 AS lag_ms,
           extract(epoch FROM o.published_at - o.created_at) * 1000 AS to_published_ms
    FROM notifications.inbox i
    JOIN (SELECT event_id, created_at, published_at FROM sales.outbox
          UNION ALL SELECT event_id, created_at, published_at FROM customers.outbox) o
      USING (event_id)
    WHERE i.consumer_group = 'notifications' AND o.created_at >= :since AND o.created_at < :until
) lags
"""


def _window(
    bench: BenchRun,
    name: str,
    meter: CpuMeter,
    seconds: float,
    hooks: tuple[Callable[[], None], Callable[[], None]] | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """One measured purchase window with ``meter`` (and ``hooks``, start and end) around it:
    the load's figures and the CPU seconds of each group."""
    assert bench.dataset is not None

    def opened() -> None:
        meter.begin(name)
        if hooks:
            hooks[0]()

    def closed() -> None:
        meter.end(name)
        if hooks:
            hooks[1]()

    result = run_load(
        name,
        bench.stack.urls["sales"] + "/sales",
        bench.dataset.buyers,
        bench.dataset.product_ids,
        duration_s=seconds,
        warmup_s=bench.knobs.warmup_s,
        seed=bench.knobs.seed + 11,
        on_window=(opened, closed),
    )
    figures = result.summary()
    spent = meter.results.get(name, {})
    purchase = sum(v for k, v in spent.items() if k.startswith("purchase"))
    figures["cpu_ms_per_sale"] = CpuMeter.per_sale(spent, result.completed)
    figures["purchase_cpu_ms_per_sale"] = (
        round(purchase * 1000 / result.completed, 3) if result.completed else None
    )
    bench.console.print(
        f"  {name}: [bold]{figures['per_s']:.1f}/s[/], p50 {figures['p50_ms']} ms, p99 "
        f"{figures['p99_ms']} ms, {figures['errors']} errors; purchase path CPU "
        f"{figures['purchase_cpu_ms_per_sale']} ms/sale"
    )
    return figures, spent


def _restart_services(bench: BenchRun, extra_env: dict[str, str]) -> None:
    """Restart every service with ``extra_env``; the run's samplers follow the new pids."""
    for service in SERVICES:
        bench.stack.processes[service].stop(timeout_s=10)
        process = bench.stack.start_service(service, extra_env=extra_env)
        pid = process.process.pid if process.process is not None else 0
        bench.rss.watch(service, pid)
        bench.cpu.watch(service, lambda pid=pid: tree(pid))  # type: ignore[misc]


@contextmanager
def _events_on(bench: BenchRun, broker: Broker, mail_dir: Path) -> Iterator[WorkerProcess]:
    """The services with ``EVENTS_URL``, and the notifications worker; back off after."""
    sink = mailsink.start(mail_dir)
    events = {"EVENTS_URL": broker.url}
    worker = WorkerProcess(
        "notifications-worker",
        "notifications_service.worker",
        env={
            **bench.stack.env,
            **events,
            "SMTP_URL": sink.url,
            "WORKER_METRICS_PORT": "0",
        },
        log=(bench.knobs.results / "logs" / "notifications-worker.log").open("ab"),
    )
    try:
        _restart_services(bench, events)
        worker.start()
        yield worker
    finally:
        worker.stop()
        sink.stop()
        _restart_services(bench, {})


def _relay_alone(url: str, broker: Broker, events: int) -> dict[str, Any]:
    """``events`` rows in an outbox of their own, drained by one relay: events per second."""
    engine = create_engine(url, pool_size=2)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {RELAY_SCHEMA} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {RELAY_SCHEMA}"))
        table = outbox_table(MetaData(schema=RELAY_SCHEMA))
        table.metadata.create_all(engine)
        orders = [str(uuid.uuid4()) for _ in range(max(1, events // 50))]
        emit_backlog(sessionmaker(engine), table, orders, events)
        client = broker_client(broker.url, timeout_s=10)
        relay = Relay(engine, table, client, service="bench-relay",
                      settings=RelaySettings(batch_size=500))  # fmt: skip
        seconds = drain(relay)
        client.close()
        published = _scalar(
            engine, f"SELECT count(*) FROM {RELAY_SCHEMA}.outbox WHERE published_at IS NOT NULL"
        )
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {RELAY_SCHEMA} CASCADE"))
    finally:
        engine.dispose()
    return {
        "events": events,
        "published": int(published),
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds) if seconds else None,
        "batch_size": 500,
    }


@dataclass
class _Marks:
    """What the on window's hooks read at its start and end."""

    since: Any = None
    until: Any = None
    threads_before: dict[int, float] = field(default_factory=dict)
    threads_after: dict[int, float] = field(default_factory=dict)


#: Events a group applied (its transaction started) within a window, from its inbox.
APPLIED_QUERY = """
SELECT count(*) FROM {inbox}
WHERE consumer_group = :group AND applied_at >= :since AND applied_at < :until
"""
#: Reviews' group (verified purchases from order events) runs in the reviews workers,
#: which serve nothing else during the window: its process and backends are its cost.
REVIEWS_GROUP = ("reviews", "reviews.inbox")
#: Events committed within a window that the notifications group has not applied yet.
UNAPPLIED_QUERY = """
SELECT count(*) FROM (SELECT event_id FROM sales.outbox WHERE created_at >= :since
                      AND created_at < :until
                      UNION ALL SELECT event_id FROM customers.outbox WHERE created_at >= :since
                      AND created_at < :until) o
WHERE NOT EXISTS (SELECT 1 FROM notifications.inbox i
                  WHERE i.consumer_group = 'notifications' AND i.event_id = o.event_id)
"""
#: How long the window's last events get to reach the consumer before the lag is read.
SETTLE_S = 15.0
#: What events on inherit from the run so far (the outboxes kept writing with events off):
#: rows not yet published, events not yet applied by the group, mails not yet sent.
BACKLOG_QUERY = f"""
SELECT {" + ".join(f"(SELECT count(*) FROM {t} WHERE published_at IS NULL)" for t in OUTBOXES)},
       (SELECT count(*) FROM sales.outbox) + (SELECT count(*) FROM customers.outbox)
     - (SELECT count(*) FROM notifications.inbox WHERE consumer_group = 'notifications'),
       (SELECT count(*) FROM notifications.mails WHERE sent_at IS NULL)
"""
#: The longest the catch-up on that backlog may take before the window starts anyway.
CATCH_UP_S = 180.0


def _catch_up(bench: BenchRun, engine: Any) -> dict[str, Any]:
    """Wait until the backlog the run left (published, applied, mailed) is gone, boundedly:
    the on window then measures the steady state, not a catch-up."""
    started = time.monotonic()
    with engine.connect() as conn:
        first = conn.execute(text(BACKLOG_QUERY)).one()
    left = first
    while any(left) and time.monotonic() - started < CATCH_UP_S:
        time.sleep(0.5)
        with engine.connect() as conn:
            left = conn.execute(text(BACKLOG_QUERY)).one()
    figures = {
        "unpublished_at_start": int(first[0]),
        "unapplied_at_start": int(first[1]),
        "seconds": round(time.monotonic() - started, 1),
        "left": [int(x) for x in left],
    }
    bench.console.print(
        f"  catch-up on the run's earlier events: {figures['unpublished_at_start']:,} to publish,"
        f" {figures['unapplied_at_start']:,} to apply, done in {figures['seconds']} s"
        + (f" (still {figures['left']} unpublished/unapplied/unsent)" if any(left) else "")
    )
    return figures


def _consumer_figures(
    worker_pid: int, marks: _Marks, spent: dict[str, float], applied: int
) -> dict[str, Any]:
    """The consumer's CPU per event (its threads but the main one, plus its backends) and
    the mail sender's (the worker's main thread) beside it."""
    delta = {
        tid: seconds - marks.threads_before.get(tid, 0.0)
        for tid, seconds in marks.threads_after.items()
    }
    sender = delta.pop(worker_pid, 0.0)  # the main thread sends the mails
    consumer = sum(delta.values())
    database = spent.get("postgres worker", 0.0)
    per_event = (consumer + database) * 1000 / applied if applied else None
    return {
        "events_applied": applied,
        "cpu_ms_per_event": round(per_event, 3) if per_event is not None else None,
        "consumer_thread_ms_per_event": round(consumer * 1000 / applied, 3) if applied else None,
        "postgres_ms_per_event": round(database * 1000 / applied, 3) if applied else None,
        "mail_sender_ms_per_event": round(sender * 1000 / applied, 3) if applied else None,
        "mail_sender_postgres_ms_per_event": (
            round(spent.get("postgres mailer", 0.0) * 1000 / applied, 3) if applied else None
        ),
        "worker_process_ms_per_event": (
            round(spent.get("worker", 0.0) * 1000 / applied, 3) if applied else None
        ),
    }


def _lag(engine: Any, marks: _Marks) -> dict[str, Any]:
    """Commit-to-effect lag of the window's events, once they are applied (boundedly)."""
    window = {"since": marks.since, "until": marks.until}
    deadline = time.monotonic() + SETTLE_S
    unapplied = _scalar(engine, UNAPPLIED_QUERY, **window)
    while unapplied and time.monotonic() < deadline:
        time.sleep(0.5)
        unapplied = _scalar(engine, UNAPPLIED_QUERY, **window)
    with engine.connect() as conn:
        p50, p99, worst, count, published_p50, applied_p50 = conn.execute(
            text(LAG_QUERY), window
        ).one()

    def ms(value: Any) -> float | None:
        return round(float(value), 1) if value is not None else None

    return {
        "events": int(count),
        "p50_ms": ms(p50),
        "p99_ms": ms(p99),
        "max_ms": ms(worst),
        # The medians of the two halves (they need not add up to the whole's median).
        "to_published_p50_ms": ms(published_p50),
        "published_to_applied_p50_ms": ms(applied_p50),
        f"not_applied_after_{SETTLE_S:g}_s": int(unapplied or 0),
    }


def _ratios(figures: dict[str, Any]) -> dict[str, float | None]:
    off, on = figures.get("off") or {}, figures.get("on") or {}

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    return {
        "throughput_on_vs_off": ratio(on.get("per_s"), off.get("per_s")),
        "purchase_cpu_per_sale_on_vs_off": ratio(
            on.get("purchase_cpu_ms_per_sale"), off.get("purchase_cpu_ms_per_sale")
        ),
    }


def run(bench: BenchRun) -> None:
    """The phase: off window, on window, relay alone; figures in ``summary["events"]``."""
    knobs = Knobs()
    if knobs.seconds <= 0 or bench.dataset is None:
        return
    bench.console.print(
        f"[bold]events on vs off[/]: {len(bench.dataset.buyers)} buyers, {knobs.seconds:g} s each"
    )
    backends = Backends(bench.stack.url)
    engine = create_engine(bench.stack.url, pool_size=1)
    figures: dict[str, Any] = {"seconds": knobs.seconds}
    try:
        with throwaway_broker("shop-bench-valkey-") as broker:
            with _events_on(bench, broker, bench.knobs.results / "mail") as worker:
                figures["catch_up"] = _catch_up(bench, engine)
                figures["on"], figures["consumer"], figures["lag"] = _on_window(
                    bench, backends, engine, worker, knobs.seconds
                )
            # The worker is gone: nothing consumes the relay's events but the test itself.
            bench.console.print(f"  relay alone: {knobs.relay_events:,} events")
            figures["relay"] = _relay_alone(bench.stack.url, broker, knobs.relay_events)
            figures["broker_peak_rss_mib"] = round(peak_rss_mib(broker.process.pid), 1)
        meter = _meter(bench, backends, None)
        meter.start()
        try:
            figures["off"], _ = _window(bench, "events-off", meter, knobs.seconds)
        finally:
            meter.stop()
    finally:
        backends.dispose()
        engine.dispose()
    figures["ratios"] = _ratios(figures)
    figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
    bench.summary["events"] = figures
    print_table(bench.summary, bench.console)


def _on_window(
    bench: BenchRun, backends: Backends, engine: Any, worker: WorkerProcess, seconds: float
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The window with events on: the load's figures, the consumer's and the lag."""
    meter = _meter(bench, backends, worker.pid)
    meter.start()
    marks = _Marks()

    def opened() -> None:
        marks.threads_before = _thread_seconds(worker.pid)
        marks.since = _scalar(engine, "SELECT clock_timestamp()")

    def closed() -> None:
        marks.until = _scalar(engine, "SELECT clock_timestamp()")
        marks.threads_after = _thread_seconds(worker.pid)

    try:
        on, spent = _window(bench, "events-on", meter, seconds, (opened, closed))
    finally:
        meter.stop()
    window = {"since": marks.since, "until": marks.until}
    query = APPLIED_QUERY.format(inbox="notifications.inbox")
    applied = int(_scalar(engine, query, group="notifications", **window) or 0)
    consumer = _consumer_figures(worker.pid, marks, spent, applied)
    group, inbox = REVIEWS_GROUP
    in_reviews = int(_scalar(engine, APPLIED_QUERY.format(inbox=inbox), group=group, **window) or 0)
    reviews_cpu = spent.get("reviews", 0.0) + spent.get("postgres reviews", 0.0)
    consumer["reviews_group"] = {
        "events_applied": in_reviews,
        "cpu_ms_per_event": round(reviews_cpu * 1000 / in_reviews, 3) if in_reviews else None,
    }
    lag = _lag(engine, marks)
    bench.console.print(
        f"  consumer: {consumer['events_applied']:,} events applied in the window, "
        f"{consumer['cpu_ms_per_event']} ms CPU per event (PostgreSQL included); "
        f"lag p50 {lag['p50_ms']} ms, p99 {lag['p99_ms']} ms over {lag['events']:,} events"
    )
    return on, consumer, lag


def _met(value: float | None, goal: float, *, at_least: bool) -> bool | None:
    if value is None:
        return None
    return value >= goal if at_least else value <= goal


def targets(summary: dict[str, Any]) -> dict[str, Any]:
    """The phase's targets, each met, missed or not measured (``None``)."""
    events = summary.get("events") or {}
    ratios = events.get("ratios") or {}
    lag = events.get("lag") or {}
    consumer, relay = events.get("consumer") or {}, events.get("relay") or {}
    values = {
        "events_throughput_ratio": (
            ratios.get("throughput_on_vs_off"),
            True,
            ">= 0.85 (sales/s, events on / off)",
        ),
        "events_cpu_per_sale_ratio": (
            ratios.get("purchase_cpu_per_sale_on_vs_off"),
            False,
            "<= 1.15 (purchase path CPU per sale, events on / off)",
        ),
        "consumer_cpu_ms_per_event": (
            consumer.get("cpu_ms_per_event"),
            False,
            "<= 0.3 (PostgreSQL included)",
        ),
        "events_lag_p50_ms": (lag.get("p50_ms"), False, "<= 50 (commit to the consumer's effect)"),
        "events_lag_p99_ms": (lag.get("p99_ms"), False, "<= 250 (commit to the consumer's effect)"),
        "relay_events_per_s": (
            relay.get("events_per_s"),
            True,
            ">= 5000 (the relay alone, pipelined batches)",
        ),
    }
    return {
        name: {"goal": goal, "value": value, "met": _met(value, TARGETS[name], at_least=at_least)}
        for name, (value, at_least, goal) in values.items()
    }


def print_table(summary: dict[str, Any], console: Console) -> None:
    """The on/off table and the event figures."""
    events = summary.get("events")
    if not events:
        return
    table = Table(title="events on vs off (every consumer on this machine)", title_justify="left")
    for column in (
        "",
        "sales/s",
        "p50 / p99 ms",
        "purchase path CPU ms/sale",
        "CPU ms/sale by part",
    ):
        table.add_column(column, justify="left" if not column else "right")
    for mode in ("off", "on"):
        cell = events.get(mode) or {}
        parts = cell.get("cpu_ms_per_sale") or {}
        by_part = ", ".join(f"{k} {v:.2f}" for k, v in parts.items() if k != "total" and v >= 0.05)
        table.add_row(
            mode,
            f"{cell.get('per_s', 0):.1f}",
            f"{cell.get('p50_ms')} / {cell.get('p99_ms')}",
            str(cell.get("purchase_cpu_ms_per_sale")),
            by_part,
        )
    ratios = events.get("ratios") or {}
    table.add_row(
        "on / off",
        f"{ratios.get('throughput_on_vs_off')}x",
        "",
        f"{ratios.get('purchase_cpu_per_sale_on_vs_off')}x",
        "",
    )
    console.print(table)
    consumer, lag, relay = (
        events.get("consumer") or {},
        events.get("lag") or {},
        events.get("relay") or {},
    )
    console.print(
        f"consumer (notifications): {consumer.get('cpu_ms_per_event')} ms CPU per event "
        f"(thread {consumer.get('consumer_thread_ms_per_event')}, PostgreSQL "
        f"{consumer.get('postgres_ms_per_event')}; the mail sender beside it "
        f"{consumer.get('mail_sender_ms_per_event')}, PostgreSQL "
        f"{consumer.get('mail_sender_postgres_ms_per_event')}) over "
        f"{consumer.get('events_applied')} events; reviews' group (its workers and backends) "
        f"{(consumer.get('reviews_group') or {}).get('cpu_ms_per_event')} ms per event\n"
        f"lag commit -> effect: p50 {lag.get('p50_ms')} ms, p99 {lag.get('p99_ms')} ms, max "
        f"{lag.get('max_ms')} ms over {lag.get('events')} events (medians: commit -> published "
        f"{lag.get('to_published_p50_ms')} ms, published -> applied "
        f"{lag.get('published_to_applied_p50_ms')} ms)\n"
        f"relay alone: {relay.get('events_per_s')} events/s ({relay.get('events')} events in "
        f"{relay.get('seconds')} s, batches of {relay.get('batch_size')}); broker peak RSS "
        f"{events.get('broker_peak_rss_mib')} MiB"
    )  # fmt: skip


def main(strict_run: bool = False) -> int:
    """``BENCH_ONLY=events``: the stack, the dataset and this phase alone; figures in
    ``bench/results/events.json``. 1 if the phase measured nothing (or, ``strict_run``, a
    target was missed)."""
    from bench.phases import Bench  # noqa: PLC0415 (the whole run's driver imports this module)

    knobs = harness.Knobs()
    console = Console(highlight=False, width=110)
    (knobs.results / "logs").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="shop-bench-prof-") as profile_tmp,
        harness.database(knobs, console) as url,
    ):
        bench = Bench(knobs, console, url, Path(profile_tmp))
        try:
            bench.start(started)
            run(bench)
        finally:
            bench.stop()
    events = bench.summary.get("events")
    checks = targets(bench.summary)
    result = {"events": events, "targets": checks, "machine": bench.summary["machine"]}
    (knobs.results / "events.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    for name, check in checks.items():
        verdict = {True: "met", False: "MISSED", None: "not measured"}[check["met"]]
        console.print(f"  {name}: {check['value']} (goal {check['goal']}): {verdict}")
    not_met = [name for name, check in checks.items() if check["met"] is False]
    console.print(
        f"results in {knobs.results / 'events.json'} ({time.monotonic() - started:.0f} s)"
    )
    if not events:
        return 1
    return 1 if strict_run and not_met else 0
