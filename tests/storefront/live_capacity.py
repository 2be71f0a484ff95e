"""How many open live order pages one storefront worker holds.

``python -m tests.storefront.live_capacity --streams 8000`` starts a throwaway
broker and the storefront under gunicorn as the registry runs it (one worker,
eight threads), opens that many server-sent-event streams (20 per customer,
each with a session cookie as the storefront's login writes it), and reports:

- the worker's resident memory before and after, and so per open stream;
- after one order event per customer is published, how long until every
  stream had its customer's event (and that none got another's);
- how long a page request takes while they are all open (no thread is held).

``tests/storefront/test_live.py`` runs it with a few hundred streams; the figures
in docs/events.rst come from a run with thousands.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import psutil
import redis
import requests

from shopkit.events.envelope import Event, encode
from shopkit.registry import app
from tests.support.database import ServiceProcess, broker, free_port
from tests.support.storefront import session_cookie

SECRET = "live-capacity-secret"
PER_CUSTOMER = 20


@dataclass
class Figures:
    """What one run measured."""

    streams: int
    rss_before_mib: float
    rss_after_mib: float
    fanout_p50_ms: float
    fanout_max_ms: float
    page_ms: float
    foreign_events: int
    #: The worker's CPU (user + system) per stream opened (the view's request), and per
    #: event written to a stream during the fan-out.
    open_cpu_ms: float = 0.0
    fanout_cpu_us: float = 0.0

    @property
    def kib_per_stream(self) -> float:
        """Resident memory of the worker per open stream."""
        return (self.rss_after_mib - self.rss_before_mib) * 1024 / max(1, self.streams)

    def report(self) -> str:
        """The figures in one paragraph."""
        return (
            f"{self.streams} open streams: worker RSS {self.rss_before_mib:.1f} -> "
            f"{self.rss_after_mib:.1f} MiB ({self.kib_per_stream:.1f} KiB per stream); "
            f"one event per customer reached every stream in p50 {self.fanout_p50_ms:.0f} ms, "
            f"max {self.fanout_max_ms:.0f} ms; a page answered in {self.page_ms:.0f} ms "
            f"meanwhile; events of another customer received: {self.foreign_events}; worker "
            f"CPU {self.open_cpu_ms:.2f} ms per stream opened, {self.fanout_cpu_us:.0f} us per "
            "event written"
        )


@contextmanager
def storefront_with_broker(
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[str, broker.Broker]]:
    """A throwaway broker and the storefront under gunicorn (registry layout) following it;
    yields the storefront's URL and the broker. No service runs: the live stream needs
    none (the session's token is renewed only near its expiry)."""
    layout = app("storefront")
    with broker.throwaway_broker() as running:
        port = free_port()
        env = {
            # its own broker user, as make run gives it (it may only read the order stream)
            "EVENTS_URL": running.storefront_url,
            "STOREFRONT_SECRET_KEY": SECRET,
            "LOG_LEVEL": "WARNING",
        }
        process = ServiceProcess(
            "storefront",
            port,
            env={**env, **(extra_env or {})},
            workers=layout.workers,
            threads=layout.threads,
        )
        process.start()
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(process.url + "/healthz", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                assert time.monotonic() < deadline, "the storefront did not start"
                time.sleep(0.2)
            yield process.url, running
        finally:
            process.stop()


def worker_rss_mib(url: str) -> float:
    """Resident memory of the gunicorn worker serving ``url``, in MiB."""
    return float(worker(url).memory_info().rss) / 2**20


def worker_cpu_s(url: str) -> float:
    """CPU seconds (user and system) the gunicorn worker serving ``url`` has used."""
    times = worker(url).cpu_times()
    return float(times.user + times.system)


def worker(url: str) -> psutil.Process:
    """The gunicorn worker serving ``url`` (the child of the process listening on its port)."""
    port = int(url.rsplit(":", 1)[1])
    for proc in psutil.process_iter(["pid"]):
        try:
            listening = any(
                c.laddr.port == port and c.status == psutil.CONN_LISTEN
                for c in proc.net_connections("tcp")
            )
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
        if listening and proc.children():
            return proc.children()[0]
    raise LookupError(f"no gunicorn worker behind {url}")


def order_event(
    customer_id: int, kind: str = "shipped", order_id: str | None = None
) -> tuple[str, bytes]:
    """A ``shop.order.<kind>.v1`` of ``customer_id``'s order (a new one unless given): its
    order id and the stream entry's value."""
    order_id = order_id or str(uuid.uuid4())
    event = Event(
        id=str(uuid.uuid4()),
        source="/sales",
        type=f"shop.order.{kind}.v1",
        subject=order_id,
        time=datetime.now(UTC),
        data={"order_id": order_id, "customer_id": customer_id},
    )
    return order_id, encode(event)


def publish(events_url: str, *customer_ids: int, order_id: str | None = None) -> list[str]:
    """XADD one order event per customer, in one pipeline, as the relay does (for a new
    order each, or all for ``order_id``); the order ids."""
    made = [order_event(customer_id, order_id=order_id) for customer_id in customer_ids]
    client = redis.Redis.from_url(events_url)
    try:
        pipe = client.pipeline(transaction=False)
        for _, entry in made:
            pipe.xadd("events:order", {"event": entry})
        pipe.execute()
    finally:
        client.close()
    return [made_id for made_id, _ in made]


async def open_stream(
    port: int, cookie: str, query: str = ""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open ``/live/orders`` as a browser would and read its head (which the hub writes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /live/orders{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        f"Cookie: shop_session={cookie}\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    await asyncio.wait_for(reader.readuntil(b"\n\n"), 30)  # retry: ...
    return reader, writer


async def next_event(reader: asyncio.StreamReader, timeout_s: float = 20.0) -> bytes:
    """The next event's lines on a stream (heartbeats skipped), within ``timeout_s``."""

    async def read() -> bytes:
        while True:
            block = await reader.readuntil(b"\n\n")
            if b"event: " in block:
                return block

    return await asyncio.wait_for(read(), timeout_s)


async def next_order_id(reader: asyncio.StreamReader, timeout_s: float = 30.0) -> str:
    """The order id of the next ``order`` event on a stream, within ``timeout_s``."""
    block = await next_event(reader, timeout_s)
    assert b"event: order" in block, block
    data = block.split(b"data: ", 1)[1].split(b"\n", 1)[0]
    return str(json.loads(data)["order_id"])


async def measure(url: str, events_url: str, streams: int) -> Figures:
    """Open ``streams`` streams, publish, and measure (see the module documentation)."""
    port = int(url.rsplit(":", 1)[1])
    customers = max(1, -(-streams // PER_CUSTOMER))
    cookies = {c: session_cookie(SECRET, f"shopper{c}", c) for c in range(1, customers + 1)}
    rss_before = worker_rss_mib(url)
    cpu_before = worker_cpu_s(url)
    gate = asyncio.Semaphore(100)

    async def one(index: int) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
        customer = index % customers + 1
        async with gate:
            reader, writer = await open_stream(port, cookies[customer])
        return customer, reader, writer

    opened = await asyncio.gather(*(one(i) for i in range(streams)))
    open_cpu = worker_cpu_s(url) - cpu_before
    await asyncio.sleep(1)
    rss_after = worker_rss_mib(url)
    started = time.monotonic()
    page = requests.get(url + "/login", timeout=10)
    page_ms = (time.monotonic() - started) * 1000
    assert page.status_code == 200

    cpu_before = worker_cpu_s(url)
    start = time.monotonic()
    orders = dict(zip(publish(events_url, *cookies), cookies, strict=True))
    foreign = 0

    async def receive(customer: int, reader: asyncio.StreamReader) -> float:
        nonlocal foreign
        order_id = await next_order_id(reader)
        if orders.get(order_id) != customer:
            foreign += 1
        return (time.monotonic() - start) * 1000

    delays = await asyncio.gather(*(receive(c, r) for c, r, _ in opened))
    fanout_cpu = worker_cpu_s(url) - cpu_before
    for _, _, writer in opened:
        writer.close()
    return Figures(
        streams=streams,
        rss_before_mib=rss_before,
        rss_after_mib=rss_after,
        fanout_p50_ms=statistics.median(delays),
        fanout_max_ms=max(delays),
        page_ms=page_ms,
        foreign_events=foreign,
        open_cpu_ms=open_cpu * 1000 / streams,
        fanout_cpu_us=fanout_cpu * 1e6 / streams,
    )


def main() -> None:
    """Run once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", type=int, default=2000)
    args = parser.parse_args()
    with storefront_with_broker() as (url, running):
        figures = asyncio.run(measure(url, running.url, args.streams))
    print(figures.report())


if __name__ == "__main__":
    main()
