"""The coalescer alone: a lone call goes at once, concurrent ones share bounded batches."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from sales_service.batching import Coalescer
from shopkit.service_client import DependencyUnavailable, ServiceResponse


class Recorder:
    """A ``send`` that records each batch and answers each item with its own value."""

    def __init__(self, pause_s: float = 0.0, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.pause_s = pause_s
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, items: Sequence[int]) -> list[ServiceResponse]:
        with self.lock:
            self.batches.append(list(items))
        time.sleep(self.pause_s)
        if self.fail:
            raise DependencyUnavailable("inventory")
        return [ServiceResponse(201, {"item": item}) for item in items]


def test_a_lone_call_goes_at_once_whatever_the_window() -> None:
    send = Recorder()
    coalescer = Coalescer("reserve", send, window_s=5.0, max_size=32)
    began = time.monotonic()
    assert coalescer.call(7, announced=False).body == {"item": 7}
    assert time.monotonic() - began < 1.0
    coalescer.announce()
    began = time.monotonic()
    assert coalescer.call(8, announced=True).body == {"item": 8}  # nothing else expected
    assert time.monotonic() - began < 1.0
    assert send.batches == [[7], [8]]


def test_concurrent_calls_share_batches_of_at_most_max_size() -> None:
    send = Recorder(pause_s=0.05)
    coalescer = Coalescer("reserve", send, window_s=0.5, max_size=8, max_flights=1)
    coalescer.announce(20)
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda i: coalescer.call(i, announced=True), range(20)))
    assert [a.body["item"] for a in answers] == list(range(20))  # each gets its own answer
    assert sorted(i for batch in send.batches for i in batch) == list(range(20))
    assert all(len(batch) <= 8 for batch in send.batches)
    assert len(send.batches) <= 4  # 20 calls in at most 4 batches, not 20 calls
    assert (coalescer.calls, coalescer.batches) == (20, len(send.batches))


def test_an_announced_call_that_never_comes_costs_at_most_the_window() -> None:
    send = Recorder()
    coalescer = Coalescer("debit", send, window_s=0.2, max_size=8)
    coalescer.announce(2)  # one of them ends early and never calls
    began = time.monotonic()
    coalescer.call(1, announced=True)
    assert 0.15 <= time.monotonic() - began < 2.0
    coalescer.withdraw()
    began = time.monotonic()
    coalescer.call(2, announced=False)
    assert time.monotonic() - began < 0.15


def test_a_batch_that_fails_fails_each_of_its_calls() -> None:
    coalescer = Coalescer("reserve", Recorder(fail=True), window_s=0.1, max_size=8)
    coalescer.announce(3)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(coalescer.call, i, announced=True) for i in range(3)]
        for future in futures:
            with pytest.raises(DependencyUnavailable):
                future.result()
    assert coalescer._flights == 0  # every flight came back
