"""Live order updates: one asyncio loop fans the order stream out to every open page.

The storefront's pages are served by a few threads (gunicorn ``gthread``); a
server-sent-events stream held by one of them would take it for as long as the
page is open. Instead the stream's request is answered by a Flask view like
any other (session, token renewal, security headers) and its connection is then
handed over (:class:`shopkit.gunicorn_worker.Handover`) to this hub: one daemon
thread per storefront process running an asyncio loop, which holds every open
page's socket and writes to it only when there is something to say.

The hub reads the order stream (``events:order``) with plain ``XREAD``, not a
consumer group: every open page must see every event of its customer, and
nothing here needs acknowledging. It starts from the moment it started (stream
ids begin with their millisecond time) and then follows the last id it saw, so
a broker that is away when it starts, or goes away and comes back, loses it
nothing. Each event goes only to the streams of the customer in its ``data``
(and, for an order page, of that order); it carries the order id and what
happened, never the customer id. A short backlog of recent events lets a
reconnecting page (``Last-Event-ID``) or a page just rendered (``since``) get
what it missed; older than the backlog, it is told to ``reload`` its fragment.

A stream lasts until a little before the session's access token expires (the
browser then reconnects through the view, which renews the token or ends the
session), is closed as soon as its session is logged out (:meth:`LiveHub.end_session`),
and gets a comment line every :data:`HEARTBEAT_S` so proxies keep it open and dead
peers are found.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import resource
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio
from prometheus_client import Gauge

from shopkit.events.catalog import UnknownEventType, event_type, stream_for
from shopkit.events.envelope import FIELD, MalformedEvent, decode
from shopkit.events.streams import as_text

log = logging.getLogger(__name__)

#: The stream the hub follows.
ORDER_STREAM = stream_for("order")
#: Seconds between heartbeats (a comment line) on every open stream.
HEARTBEAT_S = 15.0
#: How long one ``XREAD`` waits for new entries, in milliseconds.
BLOCK_MS = 5000
#: Entries read at most per ``XREAD``.
READ_COUNT = 500
#: Recent events kept for reconnecting pages.
BACKLOG = 4096
#: Bytes a page may leave unread before its stream is dropped (it reconnects).
MAX_UNSENT_BYTES = 256 * 1024
#: Open streams one storefront process holds at most (see docs/storefront.rst).
MAX_STREAMS = 10_000
#: File descriptors kept free for everything else the process opens (pages, service calls).
FD_RESERVE = 256
#: Streams of one customer at most (tabs, devices).
MAX_PER_CUSTOMER = 32
#: Back-off after a broker error, doubling up to the maximum (seconds).
RETRY_MIN_S, RETRY_MAX_S = 0.5, 10.0
#: Seconds before a reader or heartbeat task that failed unexpectedly starts again.
RESTART_S = 1.0
#: What the browser waits before reconnecting (the ``retry`` field), in milliseconds.
RECONNECT_MS = 3000
#: The hub follows the stream from this long before it started (clocks differ a little).
START_MARGIN_MS = 2000
#: Open streams (``/metrics``: summed over the storefront's workers).
OPEN_STREAMS = Gauge(
    "shop_storefront_live_streams",
    "Live order streams the storefront holds open.",
    multiprocess_mode="livesum",
)
#: An entry id as the broker writes it (``1700000000000-0``).
ENTRY_ID = re.compile(r"^\d{1,15}-\d{1,10}$")


def fd_bounded(wanted: int) -> int:
    """``wanted`` streams, or fewer if the process may not open that many files.

    The soft limit on open files is raised towards the hard one first (many systems
    start processes at 1024); each stream holds one descriptor.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(0, min(wanted, soft - FD_RESERVE))


def parse_id(value: str) -> tuple[int, int] | None:
    """A stream entry id as a comparable pair, or ``None`` if it is not one."""
    if not ENTRY_ID.match(value):
        return None
    ms, _, seq = value.partition("-")
    return int(ms), int(seq)


@dataclass
class Subscription:
    """Who a stream is for and what it shows."""

    customer_id: int
    #: The session's id (its stream closes when the session is logged out).
    session_id: str | None
    #: Only this order's events (an order page), or every order of the customer.
    order_id: str | None = None
    #: Replay the backlog's events after this entry id (``None``: nothing to replay).
    after: tuple[int, int] | None = None
    #: When the stream ends (``time.time()``); the browser then reconnects.
    until: float = field(default_factory=lambda: time.time() + 600)

    def wants(self, customer_id: int, order_id: str) -> bool:
        """Whether an event of ``customer_id``'s order ``order_id`` belongs on this stream."""
        return customer_id == self.customer_id and self.order_id in (None, order_id)


@dataclass(frozen=True)
class _Update:
    """One order event as the pages get it."""

    entry: tuple[int, int]
    customer_id: int
    order_id: str
    message: bytes


def message(entry_id: str, event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event (``id``, ``event`` and a JSON ``data`` line)."""
    body = json.dumps(data, separators=(",", ":"))
    return f"id: {entry_id}\nevent: {event}\ndata: {body}\n\n".encode()


#: Told to a page whose missed events are no longer in the backlog: reload what it shows.
RELOAD = b"event: reload\ndata: {}\n\n"
HEARTBEAT = b": ping\n\n"


class _Stream(asyncio.Protocol):
    """One open page's connection, held by the loop."""

    def __init__(self, hub: LiveHub, subscription: Subscription) -> None:
        self.hub = hub
        self.subscription = subscription
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport (a handed-over socket, already answered)."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """An EventSource sends nothing after its request; anything else is ignored."""

    def eof_received(self) -> bool:
        """The page went away: close our side too."""
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the stream."""
        self.hub._forget(self)

    def send(self, data: bytes) -> None:
        """Write ``data``, or drop a page that stopped reading (it reconnects later)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
            transport.abort()
            return
        transport.write(data)

    def close(self) -> None:
        """End the stream (the browser reconnects after its ``retry`` delay)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class LiveHub:
    """The process's open order streams and the one reader of the order stream."""

    def __init__(
        self,
        events_url: str,
        *,
        revoked: Callable[[str], bool] = lambda _sid: False,
        max_streams: int = MAX_STREAMS,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.events_url = events_url
        self.revoked = revoked
        #: Bounded by the open files the process may have once the hub starts (the limit is
        #: raised then, not by merely building the app).
        self.max_streams = max_streams
        self.heartbeat_s = heartbeat_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._streams: dict[int, set[_Stream]] = collections.defaultdict(set)
        self._count = 0  # read from request threads: an int is enough, no lock
        self._backlog: collections.deque[_Update] = collections.deque()
        #: The backlog holds every event after this id (``None``: not reading yet).
        self._complete_after: tuple[int, int] | None = None
        #: The last entry id the reader saw (``None``: it starts from :attr:`_complete_after`).
        self._last_id: str | None = None
        #: Whether the last read of the stream worked (``None``: none yet).
        self.connected: bool | None = None

    # --- the request threads' side --------------------------------------------------------

    @property
    def streams(self) -> int:
        """How many streams are open."""
        return self._count

    def has_room(self, customer_id: int) -> bool:
        """Whether one more stream (of ``customer_id``) may open."""
        return self._count < self.max_streams and (
            len(self._streams.get(customer_id, ())) < MAX_PER_CUSTOMER
        )

    def adopt(self, sock: socket.socket, head: bytes, subscription: Subscription) -> None:
        """Take a handed-over connection: send ``head``, then the subscription's events.

        Called on a request thread; returns at once (the loop does the rest).
        """
        loop = self._ensure_started()
        loop.call_soon_threadsafe(lambda: loop.create_task(self._open(sock, head, subscription)))

    def end_session(self, session_id: str) -> None:
        """End the streams of a session that was logged out (any thread; at once)."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._end_session, session_id)

    def stop(self) -> None:
        """Stop the loop (its thread ends; open streams are cut)."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                self.max_streams = fd_bounded(self.max_streams)
                # Follow the stream from a little before now (by this clock: the broker's
                # may differ a little), whether or not the broker answers yet.
                started_ms = int(time.time() * 1000) - START_MARGIN_MS
                self._complete_after = (started_ms, 0)
                loop = asyncio.new_event_loop()
                started = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(loop, started), name="live-hub", daemon=True
                )
                self._thread.start()
                started.wait(5)
                self._loop = loop
            return self._loop

    def _run(self, loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        self._supervise(loop, self._follow)
        self._supervise(loop, self._heartbeats)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def _supervise(
        self, loop: asyncio.AbstractEventLoop, run: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """Run ``run`` for ever: if it ends with an unexpected error, log it and start it
        again after :data:`RESTART_S` (a stopped reader would leave every page silent)."""

        def ended(task: asyncio.Task[None]) -> None:
            if task.cancelled() or loop.is_closed():
                return
            log.error(
                "live updates: %s failed; it starts again", run.__name__, exc_info=task.exception()
            )
            loop.call_later(RESTART_S, self._supervise, loop, run)

        loop.create_task(run()).add_done_callback(ended)

    # --- the loop's side ------------------------------------------------------------------

    async def _open(self, sock: socket.socket, head: bytes, subscription: Subscription) -> None:
        loop = asyncio.get_running_loop()
        try:
            sock.setblocking(False)
            _, stream = await loop.connect_accepted_socket(
                lambda: _Stream(self, subscription), sock
            )
        except OSError:
            sock.close()
            return
        # No await from here on: what is replayed and what is fanned out cannot overlap.
        stream.send(head)
        self._replay(stream)
        if stream.transport is not None and not stream.transport.is_closing():
            self._streams[subscription.customer_id].add(stream)
            self._count += 1
            OPEN_STREAMS.inc()

    def _replay(self, stream: _Stream) -> None:
        after = stream.subscription.after
        if after is None:
            return
        if self._complete_after is None or after < self._complete_after:
            stream.send(RELOAD)  # missed events are gone from the backlog
            return
        for update in self._backlog:
            if update.entry > after and stream.subscription.wants(
                update.customer_id, update.order_id
            ):
                stream.send(update.message)

    def _end_session(self, session_id: str) -> None:
        for streams in list(self._streams.values()):
            for stream in list(streams):
                if stream.subscription.session_id == session_id:
                    stream.close()

    def _forget(self, stream: _Stream) -> None:
        streams = self._streams.get(stream.subscription.customer_id)
        if streams is not None and stream in streams:
            streams.discard(stream)
            self._count -= 1
            OPEN_STREAMS.dec()
            if not streams:
                del self._streams[stream.subscription.customer_id]

    def _publish(self, update: _Update) -> None:
        if len(self._backlog) >= BACKLOG:
            self._complete_after = self._backlog.popleft().entry
        self._backlog.append(update)
        for stream in list(self._streams.get(update.customer_id, ())):
            if stream.subscription.wants(update.customer_id, update.order_id):
                stream.send(update.message)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            now = time.time()
            for streams in list(self._streams.values()):
                for stream in list(streams):
                    sid = stream.subscription.session_id
                    if stream.subscription.until <= now or (sid is not None and self.revoked(sid)):
                        stream.close()
                    else:
                        stream.send(HEARTBEAT)

    async def _follow(self) -> None:
        """Read the order stream for ever, reconnecting with back-off."""
        client = redis.asyncio.Redis.from_url(
            self.events_url,
            socket_connect_timeout=2.0,
            socket_timeout=BLOCK_MS / 1000 + 5.0,
        )
        start = self._complete_after or (int(time.time() * 1000), 0)
        last = self._last_id or f"{start[0]}-{start[1]}"
        backoff = RETRY_MIN_S
        try:
            while True:
                try:
                    replies: Any = await client.xread(
                        {ORDER_STREAM: last}, count=READ_COUNT, block=BLOCK_MS
                    )
                except (redis.RedisError, OSError) as error:
                    if self.connected is not False:  # said once per outage
                        log.warning("live updates: the broker is unavailable (%s)", error)
                    self.connected = False
                    await asyncio.sleep(backoff)
                    backoff = min(RETRY_MAX_S, backoff * 2)
                    continue
                self.connected = True
                backoff = RETRY_MIN_S
                for _stream, entries in replies or []:
                    for raw_id, fields in entries:
                        last = self._last_id = as_text(raw_id)  # past it, even if it fails
                        update = _update(last, fields)
                        if update is not None:
                            self._publish(update)
        finally:
            await client.aclose()


def _update(entry_id: str, fields: dict[Any, Any]) -> _Update | None:
    """The page-facing form of one stream entry (``None`` for one that is not an order
    event of a customer)."""
    raw = fields.get(FIELD.encode()) or fields.get(FIELD)
    entry = parse_id(entry_id)
    if raw is None or entry is None:
        return None
    try:
        event = decode(raw)
    except MalformedEvent:
        return None
    customer_id, order_id = event.data.get("customer_id"), event.data.get("order_id")
    if not isinstance(customer_id, int) or not isinstance(order_id, str):
        return None
    try:
        what = event_type(event.type).event
    except UnknownEventType:
        what = event.type
    body = message(entry_id, "order", {"order_id": order_id, "event": what})
    return _Update(entry, customer_id, order_id, body)
