"""Free TCP ports for the tests, from a block of ports each test process has to itself.

Asking the kernel for a free port (binding port 0) and starting a server on it
later leaves a window: until the server binds it, any other process asking the
kernel may get the same port. Test processes run side by side (xdist workers,
and the fault suite beside the other tests), and a ``make run`` under test binds
its last port tens of seconds after picking it; two of them meeting on a port
made a test read another stack's ``/metrics``.

So each test process picks from a block of its own, below the kernel's ephemeral
range (``/proc/sys/net/ipv4/ip_local_port_range``, 32768 and up by default),
which port-0 binds and outgoing connections never use: ``SHOP_TEST_PORT_BASE``
(16000 unless set; ``make test`` gives its two sessions their own) plus 1,000 per
xdist worker (:func:`use_worker_block`, called by ``tests/conftest.py``). Within
the block it walks round, handing out each port that is free now, so a port
comes back only after the whole block has been handed out.
"""

from __future__ import annotations

import itertools
import os
import socket

#: Ports per test process.
BLOCK = 1000
#: Blocks per session (xdist workers beyond that share blocks, modulo).
BLOCKS = 8

_worker = 0
_offsets = itertools.cycle(range(BLOCK))


def use_worker_block(worker_id: str) -> None:
    """Pick from xdist worker ``worker_id``'s block (``gw3``: the fourth block)."""
    global _worker  # noqa: PLW0603 (one setting per process, made once at start)
    _worker = int(worker_id.removeprefix("gw") or 0) % BLOCKS


def _block_start() -> int:
    return int(os.environ.get("SHOP_TEST_PORT_BASE", "16000")) + _worker * BLOCK


def port_is_free(port: int) -> bool:
    """Whether a server could bind ``port`` on the loopback interface now.

    Bound as a server binds (gunicorn, nginx, Valkey, Python's servers all set
    ``SO_REUSEADDR``): closed connections still in TIME_WAIT don't count.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port on the loopback interface that is free now and that no other test process
    picks (the next free one of this process's block)."""
    start = _block_start()
    for _ in range(BLOCK):
        port = start + next(_offsets)
        if port_is_free(port):
            return port
    raise RuntimeError(f"no free port in {start}-{start + BLOCK - 1}")
