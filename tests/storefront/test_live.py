"""Live order streams over real processes: the storefront under gunicorn (the registry's one
worker with eight threads), a real embedded broker, and the real nginx gateway.

The sessions are cookies as the storefront's login writes them (encrypted with its
secret; see :func:`tests.support.storefront.session_cookie`): the stream needs no
service, so none runs. The shopper's whole path (a purchase, then the order page
changing by itself) is in ``tests/storefront/test_browser_shopper.py``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
import requests

from storefront.live import RECONNECT_JITTER_MS
from storefront.livehub import RECONNECT_MS
from tests.storefront.live_capacity import (
    SECRET,
    measure,
    next_event,
    next_order_id,
    open_stream,
    publish,
    storefront_with_broker,
)
from tests.support.database import Gateway, broker, free_port
from tests.support.storefront import session_cookie

pytestmark = pytest.mark.processes

ANN, BOB = 1, 2


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[str, str]]:
    """The storefront following a throwaway broker: its URL and the broker's."""
    with storefront_with_broker() as (url, running):
        yield url, running.url


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def events_until(reader: asyncio.StreamReader, last_order: str) -> list[str]:
    """Every order id the stream brings, up to and including ``last_order``."""
    seen: list[str] = []
    while not seen or seen[-1] != last_order:
        seen.append(await next_order_id(reader, timeout_s=20))
    return seen


async def nothing_more(reader: asyncio.StreamReader) -> None:
    """No order event is waiting on the stream (heartbeats aside)."""
    try:
        while True:
            block = await asyncio.wait_for(reader.readuntil(b"\n\n"), 0.5)
            assert b"event: order" not in block, block
    except TimeoutError:
        return


def test_each_stream_gets_its_own_customers_orders_only(live: tuple[str, str]) -> None:
    url, events_url = live

    async def run() -> None:
        port = port_of(url)
        ann, bob = session_cookie(SECRET, "ann", ANN), session_cookie(SECRET, "bob", BOB)
        writers = []  # kept: a writer that is collected closes its connection
        ann_all, writer = await open_stream(port, ann)
        writers.append(writer)
        bob_all, writer = await open_stream(port, bob)
        writers.append(writer)
        (lamp,) = publish(events_url, ANN)
        assert await events_until(ann_all, lamp) == [lamp]
        # Ann's order page, and Bob naming Ann's order and customer id in the query.
        ann_lamp, writer = await open_stream(port, ann, f"?order={lamp}")
        writers.append(writer)
        bob_sneaky, writer = await open_stream(port, bob, f"?order={lamp}&customer_id={ANN}&cid=1")
        writers.append(writer)
        (bowl,) = publish(events_url, ANN)
        (bobs,) = publish(events_url, BOB)
        (lamp_again,) = publish(events_url, ANN, order_id=lamp)
        (bobs_last,) = publish(events_url, BOB)
        assert await events_until(ann_all, lamp) == [bowl, lamp]
        assert await events_until(bob_all, bobs_last) == [bobs, bobs_last]
        assert lamp_again == lamp
        # The hub writes in stream order: by now everything was written that ever will be.
        assert await events_until(ann_lamp, lamp) == [lamp]
        await nothing_more(ann_lamp)
        await nothing_more(bob_sneaky)
        await nothing_more(ann_all)
        for writer in writers:
            writer.close()

    asyncio.run(run())


async def open_stream_with(
    port: int, cookie: str, headers: dict[str, str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """:func:`open_stream` with extra request headers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(
        f"GET /live/orders HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}"
        f"Cookie: shop_session={cookie}\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200"), head
    retry = await asyncio.wait_for(reader.readuntil(b"\n\n"), 10)
    assert re.fullmatch(rb"retry: (\d+)\n\n", retry), retry
    assert RECONNECT_MS <= int(retry[7:-2]) <= RECONNECT_MS + RECONNECT_JITTER_MS
    return reader, writer


def test_a_reconnection_gets_what_it_missed(
    live: tuple[str, str],
) -> None:
    url, events_url = live

    async def run() -> None:
        port, cookie = port_of(url), session_cookie(SECRET, "ann", ANN)
        reader, writer = await open_stream(port, cookie)
        (first,) = publish(events_url, ANN)
        block = await next_event(reader)
        assert first.encode() in block
        last_id = block.split(b"id: ", 1)[1].split(b"\n", 1)[0].decode()
        writer.close()
        # Gone for a while: two events pass. Back with Last-Event-ID: both come at once.
        missed = publish(events_url, ANN, ANN)
        back, back_writer = await open_stream_with(port, cookie, {"Last-Event-ID": last_id})
        assert [await next_order_id(back, 10), await next_order_id(back, 10)] == missed
        # A page drawn just now (since = its time) gets nothing old.
        (later,) = publish(events_url, ANN)
        assert await next_order_id(back, 10) == later
        back_writer.close()

    asyncio.run(run())


def test_open_streams_hold_no_thread(live: tuple[str, str]) -> None:
    """Thirty times more streams than the worker has threads: a page is still served, and
    every stream gets its own customer's event (live_capacity measures it with thousands)."""
    url, events_url = live
    figures = asyncio.run(measure(url, events_url, 240))
    assert figures.foreign_events == 0
    assert figures.page_ms < 10_000
    assert figures.rss_after_mib - figures.rss_before_mib < 50  # no thread stack per stream


def test_refused_streams_are_answered_at_once(live: tuple[str, str]) -> None:
    url, _ = live
    assert requests.get(url + "/live/orders", timeout=10).status_code == 401
    admin = session_cookie(SECRET, "root", 9, role="admin")
    answer = requests.get(url + "/live/orders", cookies={"shop_session": admin}, timeout=10)
    assert answer.status_code == 403
    foreign = session_cookie("another-storefronts-secret", "ann", ANN)
    answer = requests.get(url + "/live/orders", cookies={"shop_session": foreign}, timeout=10)
    assert answer.status_code == 401  # a cookie it did not write opens no session


def test_events_pass_the_gateway_as_they_happen(live: tuple[str, str]) -> None:
    url, events_url = live
    gateway = Gateway(free_port(), {"storefront": f"127.0.0.1:{port_of(url)}"}).start()
    try:
        gateway.wait_ready()

        async def run() -> None:
            cookie = session_cookie(SECRET, "ann", ANN)
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            writer.write(
                "GET /shop/live/orders HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Cookie: shop_session={cookie}\r\n\r\n".encode()
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head, head
            (order,) = publish(events_url, ANN)
            # Unbuffered: the event arrives while the stream stays open.
            assert await next_order_id(reader, timeout_s=5) == order
            writer.close()

        asyncio.run(run())
    finally:
        gateway.stop()


def test_without_the_broker_pages_work_and_streams_resume_when_it_is_back() -> None:
    """A fresh storefront (its hub starts with the first stream, and its backlog then)."""
    with storefront_with_broker() as (url, running):

        async def run() -> None:
            port, cookie = port_of(url), session_cookie(SECRET, "ann", ANN)
            reader, writer = await open_stream(port, cookie)
            # A page drawn before the hub began cannot know what it missed: it reloads.
            old, old_writer = await open_stream(port, cookie, "?since=1000")
            assert b"event: reload" in await next_event(old)
            old_writer.close()
            running.kill()
            # The broker is gone: pages are served and streams still open.
            assert requests.get(url + "/login", timeout=10).status_code == 200
            during, during_writer = await open_stream(port, cookie)
            back = broker.restart(running)
            try:
                (order,) = publish(back.url, ANN)
                # The hub reconnects (its back-off is at most 10 s) and both streams go on.
                assert await next_order_id(reader, timeout_s=30) == order
                assert await next_order_id(during, timeout_s=5) == order
            finally:
                back.stop()
                writer.close()
                during_writer.close()

        asyncio.run(run())
