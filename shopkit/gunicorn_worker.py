"""A gthread worker that serves ``/healthz`` and ``/readyz`` on threads of their own.

In gunicorn's ``gthread`` worker every request waits for one of the
``threads`` pool threads; if they are all held by requests waiting on a hung
dependency, a health check waits behind them and an orchestrator may declare a
healthy process dead. :class:`HealthFirstWorker` looks at the first bytes of a
request when its connection becomes readable (``MSG_PEEK``: nothing is
consumed) and hands ``GET /healthz`` and ``GET /readyz`` to a small pool of
their own; everything else goes to the usual pool.
"""

from __future__ import annotations

import selectors
import socket
import time
from concurrent import futures
from functools import partial
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

HEALTH_REQUESTS = (b"GET /healthz", b"GET /readyz")
HEALTH_THREADS = 2


class HealthFirstWorker(ThreadWorker):
    """``gthread`` with a dedicated pool for health checks."""

    def init_process(self) -> None:
        """Make the health pool, then start as gthread does."""
        self.health_pool = futures.ThreadPoolExecutor(
            max_workers=HEALTH_THREADS, thread_name_prefix="health"
        )
        super().init_process()

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
        if head is not None and head.startswith(HEALTH_REQUESTS):
            fs = self.health_pool.submit(self.handle, conn)
            fs.add_done_callback(
                lambda fut: self.method_queue.defer(self.finish_request, conn, fut)
            )
            return
        super().enqueue_req(conn)
