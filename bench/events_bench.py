"""The event pipeline alone: outbox writes, the relay's publishing rate, consumers' CPU per event.

``python -m bench.events_bench`` (``BENCH_EVENTS``, default 50,000 events over
``BENCH_AGGREGATES`` = 1,000 orders) on a throwaway PostgreSQL
(``TEST_DATABASE_URL`` if set, else an embedded one) and a throwaway embedded
valkey-server:

1. **emit**: the events are written into an outbox with ``emit_many``, 500 per
   transaction (the batched purchase path's shape);
2. **relay**: one relay publishes the whole backlog in pipelined batches of
   ``BENCH_RELAY_BATCH`` (500) and marks the rows; the figure is events per
   second of wall time, and CPU per event of the relay process, PostgreSQL and
   the broker;
3. **consume**: one consumer group applies every event (an insert into an
   effects table, plus its inbox row) in batches of ``BENCH_CONSUMER_BATCH``
   (100), acknowledging after each commit; CPU per event, PostgreSQL included.

It ends with the broker's peak resident memory (``VmHWM``) and the load
average: on a shared machine the wall-clock rates fall with the load, while
"events/s per CPU core" (the inverse of the CPU all three parts spent per
event) does not. Figures go to ``bench/README.md``.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import BigInteger, Column, Identity, MetaData, String, create_engine, func, select
from sqlalchemy import Table as SqlTable
from sqlalchemy import text as sql
from sqlalchemy.orm import Session, sessionmaker

from bench.cpu import CpuMeter, tree
from devstack.broker import throwaway_broker
from devstack.postgres import scratch_database, throwaway_server
from shopkit.events.catalog import stream_for
from shopkit.events.consumer import Consumer, ConsumerSettings, inbox_table
from shopkit.events.envelope import Event
from shopkit.events.outbox import NewEvent, emit_many, outbox_table
from shopkit.events.relay import Relay, RelaySettings, broker_client

SCHEMA = "events_bench"
EVENTS = int(os.environ.get("BENCH_EVENTS", "50000"))
AGGREGATES = int(os.environ.get("BENCH_AGGREGATES", "1000"))
RELAY_BATCH = int(os.environ.get("BENCH_RELAY_BATCH", "500"))
CONSUMER_BATCH = int(os.environ.get("BENCH_CONSUMER_BATCH", "100"))
EMIT_PER_TRANSACTION = 500

metadata = MetaData(schema=SCHEMA)
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
effects = SqlTable(
    "effects",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("order_id", String(64), nullable=False),
)


def _postmaster_pid(server: object | None) -> int | None:
    if server is None:
        return None
    pid_file = Path(str(server.pgdata)) / "postmaster.pid"  # type: ignore[attr-defined]
    return int(pid_file.read_text().split("\n", 1)[0])


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory (``VmHWM``) of process ``pid`` so far, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def emit_backlog(
    sessions: sessionmaker[Session], table: SqlTable, orders: list[str], events: int
) -> float:
    """Write ``events`` order events over ``orders`` into ``table``, 500 per transaction with
    ``emit_many`` (the batched purchase path's shape); the seconds it took."""
    started = time.perf_counter()
    for first in range(0, events, EMIT_PER_TRANSACTION):
        batch = [
            NewEvent("shop.order.delivered.v1", orders[i % len(orders)],
                     {"order_id": orders[i % len(orders)], "customer_id": 1 + i % 97})
            for i in range(first, min(first + EMIT_PER_TRANSACTION, events))
        ]  # fmt: skip
        with sessions() as session, session.begin():
            emit_many(session, table, batch)
    return time.perf_counter() - started


def drain(relay: Relay) -> float:
    """Let ``relay`` publish its whole backlog in pipelined batches; the seconds it took."""
    started = time.perf_counter()
    while relay.publish_once():
        pass
    return time.perf_counter() - started


def main() -> None:
    """Run the three phases and print the figures."""
    console = Console()
    orders = [str(uuid.uuid4()) for _ in range(AGGREGATES)]
    with (
        throwaway_server("shop-events-bench-", database_url=os.environ.get("TEST_DATABASE_URL"),
                         durable=False) as (server, admin_url),
        scratch_database(admin_url, "events_bench") as url,
        throwaway_broker() as broker,
    ):  # fmt: skip
        engine = create_engine(url, pool_size=4)
        with engine.begin() as conn:
            conn.execute(sql(f"CREATE SCHEMA {SCHEMA}"))
        metadata.create_all(engine)
        sessions = sessionmaker(engine)
        client = broker_client(broker.url, timeout_s=10)
        meter = CpuMeter(interval_s=0.2)
        postmaster = _postmaster_pid(server)
        if postmaster:
            meter.watch("postgres", lambda: tree(postmaster))
        meter.watch("valkey", lambda: tree(broker.process.pid))
        meter.watch("bench process", lambda: [os.getpid()])
        meter.start()
        rows = []

        meter.begin("emit")
        emit_s = emit_backlog(sessions, outbox, orders, EVENTS)
        rows.append(("emit (outbox writes)", emit_s, meter.end("emit")))

        relay = Relay(engine, outbox, client, service="bench",
                      settings=RelaySettings(batch_size=RELAY_BATCH))  # fmt: skip
        meter.begin("relay")
        relay_s = drain(relay)
        rows.append(("relay (XADD pipeline + mark)", relay_s, meter.end("relay")))
        assert client.xlen(stream_for("order")) == EVENTS

        def apply(session: Session, events: list[Event]) -> None:
            # A batch handler: one statement for the whole batch's effects.
            session.execute(
                sql(f"INSERT INTO {SCHEMA}.effects (order_id) SELECT unnest(CAST(:ids AS text[]))"),
                {"ids": [event.subject for event in events]},
            )

        consumer = Consumer(
            client, sessions, inbox, group="bench", streams=[stream_for("order")],
            batch_handler=apply,
            settings=ConsumerSettings(batch_size=CONSUMER_BATCH, block_ms=100),
        )  # fmt: skip
        consumer.ensure_groups()
        meter.begin("consume")
        started = time.perf_counter()
        applied = 0
        while applied < EVENTS:
            applied += consumer.poll()
        consume_s = time.perf_counter() - started
        rows.append(("consume (inbox + effect, ack)", consume_s, meter.end("consume")))
        with sessions() as session:
            assert session.execute(select(func.count()).select_from(effects)).scalar_one() == EVENTS
        peak_mib = peak_rss_mib(broker.process.pid)
        meter.stop()
        engine.dispose()

    table = Table(title=f"Events: {EVENTS:,} events over {AGGREGATES:,} aggregates")
    table.add_column("phase")
    table.add_column("events/s", justify="right")
    for group in ("bench process", "postgres", "valkey"):
        table.add_column(f"CPU ms/event {group}", justify="right")
    table.add_column("CPU ms/event total", justify="right")
    table.add_column("events/s per CPU core", justify="right")
    for name, seconds, spent in rows:
        per_event = {group: spent.get(group, 0.0) * 1000 / EVENTS for group in spent}
        table.add_row(
            name,
            f"{EVENTS / seconds:,.0f}",
            *(
                f"{per_event.get(g, float('nan')):.3f}"
                for g in ("bench process", "postgres", "valkey")
            ),
            f"{sum(per_event.values()):.3f}",
            f"{1000 / sum(per_event.values()):,.0f}",
        )
    console.print(table)
    console.print(
        f"relay: {EVENTS / relay_s:,.0f} events/s; broker peak RSS: {peak_mib:.1f} MiB; "
        f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
