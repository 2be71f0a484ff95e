"""A two-route app served by the real gunicorn worker in ``test_deadline.py``.

``/hold`` keeps its thread for :data:`HOLD_S`; ``/quick`` answers at once. Each
request's deadline is ``REQUEST_DEADLINE`` seconds from its arrival.
"""

from __future__ import annotations

import os
import time

from flask import Flask

from shopkit.deadline import init_deadline
from shopkit.errors import register_error_handlers

#: How long ``/hold`` keeps its thread: longer than the 1 s budget the test gives.
HOLD_S = 3.0
#: How many times ``/quick`` ran (one worker process, so one count).
RAN: list[float] = []

app = Flask(__name__)
register_error_handlers(app)
init_deadline(app, float(os.environ.get("REQUEST_DEADLINE", "1.0")))


@app.get("/hold")
def hold() -> dict[str, str]:
    """Keep this thread busy for ``HOLD_S``."""
    time.sleep(HOLD_S)
    return {"held": "yes"}


@app.get("/quick")
def quick() -> dict[str, str]:
    """Answer at once (counted in :data:`RAN`, so a test sees whether it ran)."""
    RAN.append(time.monotonic())
    return {"ran": "yes"}


@app.get("/ran")
def ran() -> dict[str, int]:
    """How many times ``/quick`` ran."""
    return {"quick": len(RAN)}
