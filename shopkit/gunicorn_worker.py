"""A gthread worker that serves ``/healthz`` and ``/readyz`` on threads of their own.

In gunicorn's ``gthread`` worker every request waits for one of the
``threads`` pool threads; if they are all held by requests waiting on a hung
dependency, a health check waits behind them and an orchestrator may declare a
healthy process dead. :class:`HealthFirstWorker` looks at the first bytes of a
request when its connection becomes readable (``MSG_PEEK``: nothing is
consumed) and hands ``GET /healthz`` and ``GET /readyz`` to a small pool of
their own; everything else goes to the usual pool.

It also notes when each request arrived, that is when its bytes were there
and it was handed to a pool, and puts that instant in the WSGI environ
(:data:`shopkit.deadline.ARRIVAL_ENVIRON`): a request's deadline counts the
time it then waits for a free thread. A request still waiting for a thread
when the app's budget (``REQUEST_DEADLINE``) has run out is answered 503
``request_expired`` by the worker's own loop, at once: when every thread is
held by requests blocked on a frozen dependency, a queued request would
otherwise get its answer only once one of them lets go, up to a whole budget
late.

And it lets a request take its connection out of gunicorn (:class:`Handover`,
offered in the environ under :data:`HANDOVER_ENVIRON`): the app answers as
usual, every hook included, and the worker then passes the socket, with the
answer's bytes still to send, to a receiver of the app's choosing instead of
writing them itself. The storefront's live order updates (server-sent events,
:mod:`storefront.live`) use it, so an open page holds a socket in an asyncio loop,
not one of the pool's threads.
"""

from __future__ import annotations

import json
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent import futures
from functools import partial
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from shopkit.deadline import ARRIVAL_ENVIRON, RequestExpired, app_budget_s
from shopkit.errors import PROBLEM_MEDIA_TYPE, problem_body

HEALTH_REQUESTS = (b"GET /healthz", b"GET /readyz")
HEALTH_THREADS = 2

#: The WSGI environ key of the request's :class:`Handover` (absent where none is possible:
#: HTTP/2, TLS, or another server than this worker).
HANDOVER_ENVIRON = "shop.handover"

_serving = threading.local()  # the arrival of the request this thread is serving

#: Receives a handed-over connection: the socket (now the receiver's to close) and the
#: bytes of the answer's head and body, which the receiver sends first.
Receiver = Callable[[socket.socket, bytes], None]


class Handover:
    """A request's way to take its connection out of gunicorn once it has answered."""

    def __init__(self) -> None:
        self.receiver: Receiver | None = None

    def take(self, receiver: Receiver) -> None:
        """After this request's answer is complete, give the connection to ``receiver``.

        The answer (status, headers, a short body) is not written by gunicorn but
        handed to ``receiver`` with the socket; it is framed by closing the
        connection (``Connection: close``), so the receiver may go on writing to it
        for as long as it likes. The receiver is called on the request's thread and
        must return at once.
        """
        self.receiver = receiver


class HandedOver(Exception):
    """The request's connection now belongs to a receiver: gunicorn forgets it."""


def _head(
    protocol: str, status: str, headers: list[tuple[str, str]], *, length: int | None = None
) -> bytes:
    """An answer's status line and headers, closing the connection after it. The app's own
    framing headers are left out: a receiver writes more than the first bytes, so only
    the end of the connection ends the body, unless ``length`` gives the body's length."""
    framing = {"connection", "content-length", "transfer-encoding", "keep-alive"}
    lines = [f"{protocol} {status}", "Server: shop", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() not in framing]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _hand_over(environ: dict[str, Any], handover: Handover, answer: list[Any], body: Any) -> None:
    """Give the connection and the answer's bytes to the receiver; raise :class:`HandedOver`."""
    try:
        content = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    status, headers = answer
    head = _head(str(environ.get("SERVER_PROTOCOL") or "HTTP/1.1"), status, headers)
    # Detached, gunicorn's own socket object closes nothing when it is done with it.
    sock = socket.socket(fileno=environ["gunicorn.socket"].detach())
    receiver = handover.receiver
    assert receiver is not None
    try:
        receiver(sock, head + content)
    except Exception:
        sock.close()
        raise
    raise HandedOver


def _serving_app(app: Any) -> Any:
    """Wrap a WSGI app: each environ carries the arrival noted by the serving thread and,
    over plain HTTP/1.x, a :class:`Handover`."""

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        arrived = getattr(_serving, "arrived_at", None)
        if arrived is not None:
            environ[ARRIVAL_ENVIRON] = arrived
        sock = environ.get("gunicorn.socket")
        if sock is None or environ.get("HTTP_VERSION") == "2" or isinstance(sock, ssl.SSLSocket):
            return app(environ, start_response)
        handover = environ[HANDOVER_ENVIRON] = Handover()
        answer: list[Any] = []

        def respond(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if handover.receiver is None:
                return start_response(status, headers, exc_info)
            answer[:] = [status, headers]
            return lambda _data: None  # a WSGI app's write(): the storefront never uses it

        body = app(environ, respond)
        if handover.receiver is None or not answer:
            return body
        _hand_over(environ, handover, answer, body)
        return body  # not reached: _hand_over raises

    return wsgi


class HealthFirstWorker(ThreadWorker):
    """``gthread`` with a dedicated pool for health checks."""

    def init_process(self) -> None:
        """Make the health pool, then start as gthread does."""
        self.health_pool = futures.ThreadPoolExecutor(
            max_workers=HEALTH_THREADS, thread_name_prefix="health"
        )
        #: Requests handed to the pool, in arrival order: (expiry, future, connection).
        self.queued: deque[tuple[float, futures.Future[Any], Any]] = deque()
        super().init_process()

    def load_wsgi(self) -> None:
        """Load the app as gunicorn does, wrapped to receive each request's arrival; its
        budget (:func:`shopkit.deadline.init_deadline`) is how long a request may wait."""
        super().load_wsgi()
        self.budget_s = app_budget_s()
        self.wsgi = _serving_app(self.wsgi)  # type: ignore[has-type]  # gunicorn is untyped

    def handle_request(self, req: Any, conn: Any) -> Any:
        """Serve one request with its connection's arrival at hand for the app.

        A connection handed over (:class:`Handover`) is done with as far as gunicorn is
        concerned: its socket object was detached, and it is marked so that
        :meth:`finish_request` only counts it gone.
        """
        _serving.arrived_at = getattr(conn, "arrived_at", None)
        try:
            return super().handle_request(req, conn)
        except HandedOver:
            conn.handed_over = True
            return False
        finally:
            _serving.arrived_at = None

    def finish_request(self, conn: Any, fs: futures.Future[Any]) -> None:
        """Done with a request, as gthread is; a handed-over connection is only counted gone.

        gthread would close it gracefully, which fails on the detached socket, and its
        ``except`` would then count the connection gone a second time.
        """
        if getattr(conn, "handed_over", False):
            self.nr_conns -= 1
            return
        super().finish_request(conn, fs)

    def _peek(self, conn: Any) -> bytes | None:
        """The request's first bytes, or ``None`` if none arrived yet."""
        try:
            return bytes(conn.sock.recv(16, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""  # let the usual path deal with a broken connection

    def enqueue_req(self, conn: Any) -> None:
        """Send health checks to the health pool and the rest to the usual pool."""
        head = self._peek(conn)
        if head is None and hasattr(self, "pending_conns"):
            # A fresh connection with no request yet: wait for it on the poller, as
            # gunicorn itself does for slow clients, and decide when it is readable.
            conn.sock.setblocking(False)
            conn.timeout = time.monotonic() + self.cfg.keepalive
            self.pending_conns.append(conn)
            self.poller.register(
                conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
            )
            return
        if head:
            conn.data_ready = True  # the request is there: no need to wait for it
        # Arrived now (or on a fresh connection, now that it was accepted); a kept-alive
        # connection comes back here with its next request.
        conn.arrived_at = time.monotonic()
        if head is not None and head.startswith(HEALTH_REQUESTS):
            fs = self.health_pool.submit(self.handle, conn)
            fs.add_done_callback(
                lambda fut: self.method_queue.defer(self.finish_request, conn, fut)
            )
            return
        # As gthread's own enqueue_req, keeping the future to watch it while it waits.
        fs = self.tpool.submit(self.handle, conn)
        fs.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))
        self.queued.append((conn.arrived_at + self.budget_s, fs, conn))

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """Wait as gthread does, but wake for the first queued request's expiry, and answer
        the queued requests that expired."""
        if self.queued:
            timeout = max(0.0, min(timeout, self.queued[0][0] - time.monotonic()))
        super().wait_for_and_dispatch_events(timeout)
        self.expire_queued()

    def expire_queued(self) -> None:
        """Answer 503 ``request_expired`` to each request that waited its whole budget for a
        thread; a cancelled future never runs, and gthread then closes its connection."""
        now = time.monotonic()
        while self.queued:
            expires, fs, conn = self.queued[0]
            if fs.running() or fs.done():
                self.queued.popleft()
                continue
            if expires > now:
                return
            self.queued.popleft()
            if fs.cancel():
                _answer_expired(conn.sock, now - conn.arrived_at)


def _answer_expired(sock: socket.socket, waited_s: float) -> None:
    """Write the 503 ``request_expired`` problem on ``sock`` (the connection then closes)."""
    expired = RequestExpired(waited_s)
    body = json.dumps(problem_body(expired.status, expired.code, expired.detail)).encode()
    headers = [("Content-Type", PROBLEM_MEDIA_TYPE), *expired.headers.items()]
    head = _head("HTTP/1.1", "503 Service Unavailable", headers, length=len(body))
    try:
        sock.setblocking(True)
        sock.settimeout(1.0)  # a small answer: it fits in the socket's buffer
        sock.sendall(head + body)
    except OSError:
        pass  # the client went away: nothing to answer
