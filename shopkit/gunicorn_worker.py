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
time it then waits for a free thread.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from concurrent import futures
from functools import partial
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from shopkit.deadline import ARRIVAL_ENVIRON

HEALTH_REQUESTS = (b"GET /healthz", b"GET /readyz")
HEALTH_THREADS = 2

_serving = threading.local()  # the arrival of the request this thread is serving


def _with_arrival(app: Any) -> Any:
    """Wrap a WSGI app so each environ carries the arrival noted by the serving thread."""

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        arrived = getattr(_serving, "arrived_at", None)
        if arrived is not None:
            environ[ARRIVAL_ENVIRON] = arrived
        return app(environ, start_response)

    return wsgi


class HealthFirstWorker(ThreadWorker):
    """``gthread`` with a dedicated pool for health checks."""

    def init_process(self) -> None:
        """Make the health pool, then start as gthread does."""
        self.health_pool = futures.ThreadPoolExecutor(
            max_workers=HEALTH_THREADS, thread_name_prefix="health"
        )
        super().init_process()

    def load_wsgi(self) -> None:
        """Load the app as gunicorn does, wrapped to receive each request's arrival."""
        super().load_wsgi()
        self.wsgi = _with_arrival(self.wsgi)  # type: ignore[has-type]  # gunicorn is untyped

    def handle_request(self, req: Any, conn: Any) -> Any:
        """Serve one request with its connection's arrival at hand for the app."""
        _serving.arrived_at = getattr(conn, "arrived_at", None)
        try:
            return super().handle_request(req, conn)
        finally:
            _serving.arrived_at = None

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
        super().enqueue_req(conn)
