"""The inter-service HTTP client against a small real HTTP server that misbehaves on cue."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shopkit.request_id import bind_request_id
from shopkit.service_client import DependencyUnavailable, ServiceClient, ServiceTokenProvider
from tests.support.database import free_port


class Script:
    """What the fake callee answers, request by request."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, Any], float]] = []
        self.seen: list[dict[str, Any]] = []


@pytest.fixture
def callee() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            script.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status, payload, delay = script.answers.pop(0) if script.answers else (200, {}, 0.0)
            time.sleep(delay)
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script
    server.shutdown()


def client(url: str, **kwargs: Any) -> ServiceClient:
    return ServiceClient("fake", url, backoff_s=0.01, **kwargs)


def test_retries_transient_failures_with_the_same_key(callee: tuple[str, Script]) -> None:
    url, script = callee
    script.answers = [(503, {}, 0.0), (502, {}, 0.0), (201, {"ok": True}, 0.0)]
    bind_request_id("req-42")
    try:
        result = client(url, retries=2).post("/x", json={"a": 1}, idempotency_key="k-1")
    finally:
        bind_request_id(None)
    assert result.status == 201
    assert result.body == {"ok": True}
    assert len(script.seen) == 3
    assert {s["headers"]["Idempotency-Key"] for s in script.seen} == {"k-1"}
    assert {s["headers"]["X-Request-ID"] for s in script.seen} == {"req-42"}


def test_gives_up_after_bounded_retries(callee: tuple[str, Script]) -> None:
    url, script = callee
    script.answers = [(503, {}, 0.0)] * 10
    with pytest.raises(DependencyUnavailable) as raised:
        client(url, retries=2).post("/x", idempotency_key="k")
    assert raised.value.status == 503
    assert raised.value.code == "dependency_unavailable"
    assert len(script.seen) == 3


def test_client_errors_are_returned_not_retried(callee: tuple[str, Script]) -> None:
    url, script = callee
    script.answers = [(409, {"code": "insufficient_funds"}, 0.0)]
    result = client(url).post("/x", idempotency_key="k")
    assert (result.status, result.code) == (409, "insufficient_funds")
    assert len(script.seen) == 1


def test_key_in_flight_is_retried(callee: tuple[str, Script]) -> None:
    url, script = callee
    script.answers = [(409, {"code": "idempotency_key_in_use"}, 0.0), (201, {"done": 1}, 0.0)]
    assert client(url).post("/x", idempotency_key="k").status == 201


def test_slow_callee_hits_the_deadline(callee: tuple[str, Script]) -> None:
    url, script = callee
    script.answers = [(200, {}, 3.0)] * 3
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable):
        client(url, read_timeout_s=0.5, retries=5, deadline_s=1.5).get("/slow")
    assert time.monotonic() - started < 2.5


def test_unreachable_service_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable):
        client(f"http://127.0.0.1:{free_port()}", retries=2).get("/x")
    assert time.monotonic() - started < 2


class FakeTokens:
    def __init__(self) -> None:
        self.issued = 0

    def token(self, *, force_renew: bool = False) -> str:
        if force_renew or self.issued == 0:
            self.issued += 1
        return f"token-{self.issued}"


def test_renews_the_service_token_once_on_401(callee: tuple[str, Script]) -> None:
    url, script = callee
    script.answers = [(401, {"code": "token_expired"}, 0.0), (200, {"ok": 1}, 0.0)]
    tokens = FakeTokens()
    result = ServiceClient("fake", url, tokens=tokens).get("/x")  # type: ignore[arg-type]
    assert result.status == 200
    assert [s["headers"]["Authorization"] for s in script.seen] == [
        "Bearer token-1",
        "Bearer token-2",
    ]


def test_service_token_is_fetched_with_retries_and_cached(callee: tuple[str, Script]) -> None:
    import jwt

    url, script = callee
    token = jwt.encode({"sub": "sales", "exp": int(time.time()) + 900}, "k" * 32, algorithm="HS256")
    script.answers = [(503, {}, 0.0), (200, {"access_token": token}, 0.0)]
    provider = ServiceTokenProvider(url, "sales", "secret", timeout_s=3.0)
    assert provider.token() == token
    assert provider.token() == token  # cached: no third request
    assert [s["path"] for s in script.seen] == ["/auth/service-token"] * 2
    assert json.loads(script.seen[0]["body"]) == {"client_id": "sales", "client_secret": "secret"}


@pytest.mark.parametrize(
    "answer", [(200, {"access_token": "not-a-jwt"}), (200, {}), (401, {"code": "invalid_client"})]
)
def test_an_unusable_service_token_answer_is_dependency_unavailable(
    callee: tuple[str, Script], answer: tuple[int, dict[str, Any]]
) -> None:
    url, script = callee
    script.answers = [(*answer, 0.0)]
    with pytest.raises(DependencyUnavailable) as raised:
        ServiceTokenProvider(url, "sales", "secret", timeout_s=3.0).token()
    assert (raised.value.status, raised.value.code) == (503, "dependency_unavailable")


def _jwt(seconds: int) -> str:
    import jwt

    return jwt.encode(
        {"sub": "sales", "exp": int(time.time()) + seconds}, "k" * 32, algorithm="HS256"
    )


def test_an_old_token_is_renewed_in_the_background_and_kept_when_renewal_fails(
    callee: tuple[str, Script],
) -> None:
    """Within renew_before_s of expiry the caller gets the current token at once (no wait on
    the network, even with customers slow); a failed renewal keeps it in use."""
    url, script = callee
    old = _jwt(30)  # inside the 60 s renewal window, still valid
    script.answers = [(200, {"access_token": old}, 0.0), (503, {}, 1.0), (503, {}, 0.0)]
    provider = ServiceTokenProvider(url, "sales", "secret", timeout_s=1.5)
    provider.RETRY_RENEWAL_S = 0.0  # renew on the very next call
    assert provider.token() == old
    started = time.monotonic()
    assert provider.token() == old  # starts a renewal in the background
    assert time.monotonic() - started < 0.2
    time.sleep(2.0)  # the renewal failed meanwhile
    assert provider.token() == old
    assert len(script.seen) >= 2


def test_the_deadline_header_carries_what_is_left(callee: tuple[str, Script]) -> None:
    from shopkit.deadline import HEADER, deadline_scope

    url, script = callee
    with deadline_scope(0.5):
        client(url, deadline_s=5.0).get("/x")
    assert 0 < int(script.seen[0]["headers"][HEADER]) <= 500


def test_no_call_is_made_past_the_request_deadline(callee: tuple[str, Script]) -> None:
    from shopkit.deadline import deadline_scope

    url, script = callee
    script.answers = [(200, {}, 2.0)]
    started = time.monotonic()
    with deadline_scope(0.3), pytest.raises(DependencyUnavailable):
        client(url, deadline_s=5.0, read_timeout_s=5.0).get("/slow")
    assert time.monotonic() - started < 1.0


def test_the_circuit_opens_after_failures_and_fails_fast(callee: tuple[str, Script]) -> None:
    url, script = callee
    script.answers = [(503, {}, 0.0)] * 20
    fake = client(url, retries=0)
    for _ in range(5):
        with pytest.raises(DependencyUnavailable):
            fake.get("/x")
    assert fake.guard.breaker.state == "open"
    seen = len(script.seen)
    with pytest.raises(DependencyUnavailable) as raised:
        fake.get("/x")
    assert "open" in raised.value.detail
    assert len(script.seen) == seen  # not even tried


def test_timeouts_open_the_circuit_as_they_happen(callee: tuple[str, Script]) -> None:
    """A callee that never answers in time opens the circuit within one logical call:
    each timed-out attempt counts at once, and the call stops retrying into it."""
    url, script = callee
    script.answers = [(200, {}, 1.0)] * 20
    fake = client(url, read_timeout_s=0.2, retries=10, deadline_s=8.0)
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable):
        fake.get("/slow")
    assert fake.guard.breaker.state == "open"
    assert len(script.seen) == fake.guard.breaker.fail_max  # not the 11 attempts allowed
    assert time.monotonic() - started < 3.0
    with pytest.raises(DependencyUnavailable) as raised:
        fake.get("/slow")
    assert "open" in raised.value.detail
    assert len(script.seen) == fake.guard.breaker.fail_max  # not even tried


def test_a_refused_connection_counts_once_per_call_not_once_per_attempt() -> None:
    """urllib3 calls a refused connection a connect timeout; it is answered at once, so a
    call that retried into it three times is one failure, and two such calls leave the
    circuit closed (fail_max 5), as a killed dependency's first purchases must."""
    fake = client(f"http://127.0.0.1:{free_port()}", retries=2)  # nothing listens there
    for _ in range(2):
        with pytest.raises(DependencyUnavailable):
            fake.get("/x")
    assert fake.guard.breaker.state == "closed"
    for _ in range(3):
        with pytest.raises(DependencyUnavailable):
            fake.get("/x")
    assert fake.guard.breaker.state == "open"  # the fifth failed call opens it


def test_a_half_open_circuit_lets_one_trial_through_and_closes_on_success() -> None:
    from shopkit.breaker import CircuitBreaker, Rejected

    breaker = CircuitBreaker("x", fail_max=2, reset_s=0.1)
    breaker.failed(breaker.before_call())
    breaker.failed(breaker.before_call())
    with pytest.raises(Rejected):
        breaker.before_call()
    time.sleep(0.15)
    trial = breaker.before_call()
    assert trial
    with pytest.raises(Rejected):  # only one trial at a time
        breaker.before_call()
    breaker.succeeded(trial)
    assert breaker.state == "closed"
    assert breaker.before_call() is False


def test_the_bulkhead_bounds_calls_in_flight() -> None:
    from shopkit.breaker import Bulkhead, Rejected

    bulkhead = Bulkhead("x", limit=1, wait_s=0.05)
    with bulkhead.slot(), pytest.raises(Rejected), bulkhead.slot():
        pass
    with bulkhead.slot():  # freed again
        pass


@pytest.mark.parametrize(
    "problem",
    [
        {"code": "sale_pending", "sale_id": "s-1", "dependency": "inventory"},
        {"code": "dependency_unavailable", "dependency": "inventory"},
    ],
)
def test_a_503_reporting_a_failure_further_down_is_an_answer(
    callee: tuple[str, Script], problem: dict[str, Any]
) -> None:
    """It is returned at once (not retried, not dropped) and never opens the circuit."""
    url, script = callee
    script.answers = [(503, problem, 0.0)] * 20
    fake = client(url, retries=2)
    for _ in range(8):
        result = fake.post("/cart/checkout", idempotency_key="k")
        assert (result.status, result.body) == (503, problem)
    assert len(script.seen) == 8
    assert fake.guard.breaker.state == "closed"
    script.answers = [(200, {"items": []}, 0.0)]
    assert fake.get("/cart").status == 200


def test_the_callees_own_503s_still_open_the_circuit(callee: tuple[str, Script]) -> None:
    url, script = callee
    script.answers = [(503, {"code": "database_unavailable"}, 0.0)] * 20
    fake = client(url, retries=0)
    for _ in range(5):
        with pytest.raises(DependencyUnavailable):
            fake.get("/x")
    assert fake.guard.breaker.state == "open"
