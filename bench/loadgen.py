"""A closed-loop HTTP load generator: N buyer threads buying as fast as they are answered.

Each buyer is a thread with its own ``requests.Session`` (kept-alive
connection) and its own bearer token. It sends ``POST <url>`` with
``{"product_id": <random>, "quantity": 1}`` (or, for orders of ``lines > 1``,
``{"items": [{"product_id": <random>, "quantity": 1}, ...]}`` with that many
distinct products) and, as soon as the answer arrives, the next one: no think
time, so throughput is what the server sustains with ``buyers`` requests in
flight and latency includes the time a request waits for a free server thread
(Little's law: mean latency ≈ buyers / throughput).

A warm-up (not counted) precedes the measured window; requests still in
flight when the window closes are not counted either.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter


@dataclass
class Buyer:
    """One simulated customer: a username and an access token."""

    username: str
    token: str


@dataclass
class LoadResult:
    """What one load run measured."""

    name: str
    buyers: int
    duration_s: float
    completed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        """Successful requests per second over the measured window."""
        return self.completed / self.duration_s if self.duration_s else 0.0

    @property
    def error_count(self) -> int:
        """Requests that did not succeed (any status but the expected one, or no answer)."""
        return sum(self.errors.values())

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (nearest rank) of successful requests' latency in ms."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[rank - 1]

    def summary(self) -> dict[str, Any]:
        """The figures as plain JSON values."""

        def rounded(value: float | None) -> float | None:
            return round(value, 2) if value is not None else None

        return {
            "buyers": self.buyers,
            "duration_s": round(self.duration_s, 2),
            "completed": self.completed,
            "per_s": round(self.per_s, 1),
            "p50_ms": rounded(self.percentile(50)),
            "p95_ms": rounded(self.percentile(95)),
            "p99_ms": rounded(self.percentile(99)),
            "max_ms": rounded(max(self.latencies_ms) if self.latencies_ms else None),
            "errors": self.error_count,
            "error_kinds": dict(self.errors.most_common(10)),
        }


def _session(token: str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy/netrc lookups in os.environ on every request
    session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0))
    session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})
    return session


def _error_kind(response: requests.Response) -> str:
    code = None
    try:
        body = response.json()
        code = body.get("code") if isinstance(body, dict) else None
    except ValueError:
        pass
    return f"{response.status_code} {code}" if code else str(response.status_code)


def order_body(rng: random.Random, product_ids: list[int], lines: int) -> dict[str, Any]:
    """``POST /sales`` body: one unit of ``lines`` distinct random products."""
    if lines == 1:
        return {"product_id": rng.choice(product_ids), "quantity": 1}
    return {"items": [{"product_id": p, "quantity": 1} for p in rng.sample(product_ids, lines)]}


def run_load(
    name: str,
    url: str,
    buyers: list[Buyer],
    product_ids: list[int],
    *,
    duration_s: float,
    warmup_s: float = 3.0,
    expect_status: int = 201,
    seed: int = 42,
    timeout_s: float = 30.0,
    on_window: tuple[Callable[[], object], Callable[[], object]] | None = None,
    lines: int = 1,
) -> LoadResult:
    """Run ``len(buyers)`` buyers against ``url`` for ``warmup_s`` + ``duration_s`` seconds.

    Each request is an order of ``lines`` distinct products, one unit each (a
    one-line order in the one-product body, as before orders had lines).

    ``on_window`` is called (start, end) when the measured window opens and closes,
    e.g. to read CPU counters over exactly the window the figures cover.
    """
    start_at = time.monotonic() + 0.5  # every thread starts together
    window_start = start_at + warmup_s
    window_end = window_start + duration_s
    lock = threading.Lock()
    result = LoadResult(name=name, buyers=len(buyers), duration_s=duration_s)

    def buyer(index: int, who: Buyer) -> None:
        rng = random.Random(seed * 1000 + index)
        session = _session(who.token)
        completed = 0
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        time.sleep(max(0.0, start_at - time.monotonic()))
        try:
            while True:
                body = order_body(rng, product_ids, lines)
                began = time.monotonic()
                if began >= window_end:
                    break
                try:
                    response = session.post(url, json=body, timeout=timeout_s)
                    kind = None if response.status_code == expect_status else _error_kind(response)
                except requests.RequestException as exc:
                    kind = type(exc).__name__
                ended = time.monotonic()
                if began < window_start or ended > window_end:
                    continue  # warm-up, or still in flight when the window closed
                if kind is None:
                    completed += 1
                    latencies.append((ended - began) * 1000)
                else:
                    errors[kind] += 1
        finally:
            session.close()
            with lock:
                result.completed += completed
                result.latencies_ms.extend(latencies)
                result.errors.update(errors)

    threads = [
        threading.Thread(target=buyer, args=(i, b), name=f"buyer-{i}", daemon=True)
        for i, b in enumerate(buyers)
    ]
    for thread in threads:
        thread.start()
    if on_window is not None:
        time.sleep(max(0.0, window_start - time.monotonic()))
        on_window[0]()
        time.sleep(max(0.0, window_end - time.monotonic()))
        on_window[1]()
    for thread in threads:
        thread.join()
    return result
