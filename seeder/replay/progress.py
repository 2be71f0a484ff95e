"""The replay's live progress: a table on a terminal, a status line otherwise, and Ctrl-C."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.live import Live
from rich.table import Table

from seeder.replay.runner import Replay
from seeder.replay.stats import Stats


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f} ms"


def _counter_text(counter: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in sorted(counter.items())) or "-"


def _clock(seconds: float) -> str:
    """``0:01:05``: a duration for an ETA."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


#: What the two latencies measure (the tables' caption and the docs).
LATENCY_LEGEND = (
    "purchase latency: the checkout call alone (POST /cart/checkout, retries included); "
    "attempt latency: the whole attempt (product pages, cart, top-up, checkout, "
    "the result checks, then cancel, ship or review)."
)


def _progress(replay: Replay, attempts: int) -> tuple[str, str | None]:
    """The attempt count (``120/500`` for a counted run) and, while running, the ETA."""
    options, stats = replay.options, replay.stats
    running = stats.finished is None and not replay.stop_event.is_set()
    eta: float | None = None
    if options.purchases is not None:
        count = f"{attempts:,}/{options.purchases:,}"
        eta = stats.eta(options.purchases)
    else:
        count = f"{attempts:,}"
        if options.duration_s:
            eta = max(0.0, options.duration_s - stats.elapsed())
    return count, (_clock(eta) if running and eta is not None else None)


def stats_table(replay: Replay, title: str) -> Table:
    """The replay's counters as a two-column table."""
    stats: Stats = replay.stats
    with stats.lock:
        failed = dict(stats.failed)
        skipped = dict(stats.skipped)
        reviews = dict(stats.reviews)
        moderation = dict(stats.moderation)
        attempts, completed = stats.attempts, stats.completed
        top_ups, money_topped_up = stats.top_ups, stats.money_topped_up
        spent, units, restocks = stats.money_spent, stats.units_bought, stats.restocks
        refunded, after, baskets = stats.money_refunded, dict(stats.after), dict(stats.baskets)
        cart_changed = stats.cart_changed
    table = Table(
        title=title,
        title_justify="left",
        show_header=False,
        caption=LATENCY_LEGEND,
        caption_justify="left",
    )
    table.add_column(style="bold")
    table.add_column()
    count, eta = _progress(replay, attempts)
    table.add_row("attempts", count + (f"  ETA {eta}" if eta else ""))
    table.add_row(
        "completed",
        f"{completed:,} orders ({units:,} units, {spent:,.2f} spent, {refunded:,.2f} refunded)",
    )
    table.add_row(
        "lines per order",
        ", ".join(f"{lines}: {count:,}" for lines, count in sorted(baskets.items())) or "-",
    )
    table.add_row("after", _counter_text(after))
    table.add_row("failed", f"{sum(failed.values()):,}  {_counter_text(failed)}")
    table.add_row("skipped", f"{sum(skipped.values()):,}  {_counter_text(skipped)}")
    table.add_row(
        "cart changed",
        f"{cart_changed:,} (by another actor on the same account: counted, not a failure)",
    )
    table.add_row("top-ups", f"{top_ups:,} ({money_topped_up:,.2f})")
    table.add_row("reviews", _counter_text(reviews))
    table.add_row("moderation", _counter_text(moderation))
    table.add_row("restocks", f"{restocks:,}")
    table.add_row("rate", f"{stats.rate():,.1f} attempts/s over {stats.elapsed():,.1f} s")
    table.add_row(
        "purchase latency",
        f"p50 {_ms(stats.percentile('purchase', 50))}, p99 {_ms(stats.percentile('purchase', 99))}",
    )
    table.add_row(
        "attempt latency",
        f"p50 {_ms(stats.percentile('attempt', 50))}, p99 {_ms(stats.percentile('attempt', 99))}",
    )
    if replay.notification_check is not None:
        table.add_row("notifications", replay.notification_check.summary())
    return table


def _status_line(replay: Replay) -> str:
    stats = replay.stats
    with stats.lock:
        failed = sum(stats.failed.values())
        attempts, completed = stats.attempts, stats.completed
        cancelled, shipped = stats.after["cancelled"], stats.after["shipped"]
        delivered = stats.after["delivered"]
    # "replay: <n> attempts" first: the storefront's console reads the count from it.
    _count, eta = _progress(replay, attempts)
    of = f" of {replay.options.purchases:,}" if replay.options.purchases is not None else ""
    return (
        f"replay: {attempts:,} attempts{of}, {completed:,} completed ({cancelled:,} cancelled, "
        f"{shipped + delivered:,} shipped, {delivered:,} delivered), {failed:,} failed, "
        f"{stats.rate():.1f}/s, purchase latency p50 {_ms(stats.percentile('purchase', 50))}, "
        f"p99 {_ms(stats.percentile('purchase', 99))}" + (f", ETA {eta}" if eta else "")
    )


@contextmanager
def _stop_on_signals(replay: Replay, console: Console) -> Iterator[None]:
    """Ctrl-C (or SIGTERM) stops the replay cleanly; a second Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        if replay.stop_event.is_set():
            raise KeyboardInterrupt
        console.print("Stopping: waiting for the purchases in flight (Ctrl-C again to quit)...")
        replay.stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def watch(replay: Replay, console: Console, report_every_s: float) -> None:
    """Run the replay in a thread; show live progress until it ends (Ctrl-C stops it)."""
    failure: list[BaseException] = []

    def work() -> None:
        try:
            replay.run()
        except BaseException as exc:
            failure.append(exc)
            replay.stop()

    worker = threading.Thread(target=work, name="replay", daemon=True)
    title = "replay (Ctrl-C stops)"
    with _stop_on_signals(replay, console):
        worker.start()
        if console.is_terminal:
            with Live(
                stats_table(replay, title), console=console, refresh_per_second=4, transient=True
            ) as live:
                while worker.is_alive():
                    worker.join(0.25)
                    live.update(stats_table(replay, title))
        else:
            next_report = time.monotonic() + report_every_s
            while worker.is_alive():
                worker.join(0.25)
                if report_every_s > 0 and time.monotonic() >= next_report:
                    console.print(_status_line(replay))
                    next_report += report_every_s
    if failure:
        raise failure[0]
