"""HTTP client for calls between services.

Every call has a connect and read timeout, an overall deadline, and a
bounded number of retries with jittered backoff on connection errors,
timeouts, 502/503/504 and ``409 idempotency_key_in_use``; a 503 that reports a failure
further down (``sale_pending``, the callee's own ``dependency_unavailable``) is an
answer, returned as it is and never retried. Retrying a POST
is safe because every state-changing call carries an ``Idempotency-Key``:
the callee replays its stored answer instead of acting twice. The current
``X-Request-ID`` is passed on (and, while tracing is on, the W3C
``traceparent`` by the urllib3 instrumentation), and a ``service`` token is
obtained by the client-credentials grant and renewed before it expires (or on
a 401). Every attempt that got no answer or a 502/503/504 counts in
``shop_dependency_errors_total``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
import urllib3

from shopkit import deadline, faults, telemetry
from shopkit.breaker import DependencyGuard, Rejected
from shopkit.errors import ProblemError
from shopkit.json_http import JsonHttp, ServiceResponse
from shopkit.metrics import DEPENDENCY_ERRORS
from shopkit.request_id import HEADER as REQUEST_ID_HEADER
from shopkit.request_id import current_request_id

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})


class DependencyUnavailable(ProblemError):
    """503 ``dependency_unavailable``: another service could not be reached in time."""

    def __init__(self, service: str, detail: str | None = None) -> None:
        super().__init__(
            503,
            "dependency_unavailable",
            detail or f"The {service} service is unavailable; try again shortly.",
            headers={"Retry-After": "2"},
            dependency=service,
        )


@dataclass
class _Call:
    """One logical call's fixed parts (the token may be renewed once, on a 401)."""

    method: str
    url: str
    json: Any
    params: dict[str, Any] | None
    idempotency_key: str | None
    token: str | None
    #: The token is this client's service token (renewed once on a 401), not a caller's.
    renewable: bool
    #: This call is the circuit's half-open trial.
    trial: bool = False
    #: The breaker already heard of the last attempt's failure (it timed out).
    told: bool = False


class ServiceTokenProvider:
    """Obtains and caches a ``service`` access token from the customers service.

    The token is renewed ahead of time: once it is within ``renew_before_s``
    of expiring, one background thread fetches a new one while callers keep
    using the current token, which stays in use if the renewal fails. Only
    when there is no usable token at all (at start, or after a 401) does a
    caller fetch one itself; concurrent callers then wait for that one fetch.
    No lock is ever held across the network.
    """

    #: A token this close to its expiry is no longer sent.
    EXPIRY_MARGIN_S = 5.0
    #: Background renewals are tried at most this often while they fail.
    RETRY_RENEWAL_S = 2.0

    def __init__(
        self,
        customers_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout_s: float = 5.0,
        renew_before_s: float = 60.0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.renew_before_s = renew_before_s
        self.timeout_s = timeout_s
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self._fetching: threading.Event | None = None  # set when the running fetch ends
        self._renewal_tried_at = 0.0
        self._error: DependencyUnavailable | None = None
        # The same timeouts and bounded retries as any call, within ``timeout_s``.
        self._customers = ServiceClient(
            "customers",
            customers_url,
            connect_timeout_s=min(2.0, timeout_s),
            read_timeout_s=timeout_s,
            deadline_s=timeout_s,
            pool_size=4,
        )

    def token(self, *, force_renew: bool = False) -> str:
        """A valid service token: the cached one (renewed in the background when it gets old),
        or, when there is none or ``force_renew`` (the callee refused it), a new one."""
        now = time.time()
        with self._lock:
            token = self._token
            usable = token is not None and now < self._expires_at - self.EXPIRY_MARGIN_S
            if usable and not force_renew:
                if (
                    now >= self._expires_at - self.renew_before_s
                    and self._fetching is None
                    and time.monotonic() - self._renewal_tried_at >= self.RETRY_RENEWAL_S
                ):
                    self._start_fetch_locked(background=True)
                assert token is not None
                return token
            waiter = self._fetching
            if waiter is None:
                waiter = self._start_fetch_locked(background=False)
        if not waiter.wait(timeout=deadline.bounded(self.timeout_s + 1.0)):
            raise DependencyUnavailable("customers", "No service token could be obtained in time.")
        with self._lock:
            fresh = self._token is not None and (not force_renew or self._token != token)
            if fresh and time.time() < self._expires_at - self.EXPIRY_MARGIN_S:
                assert self._token is not None
                return self._token
            error = self._error
        raise error or DependencyUnavailable("customers")

    def _start_fetch_locked(self, *, background: bool) -> threading.Event:
        """Start one fetch (the lock is held by the caller); it runs in its own thread.

        A caller's fetch is part of the caller's trace (the request that found no
        token); a renewal ahead of expiry is housekeeping and makes no span.
        """
        done = threading.Event()
        self._fetching = done
        self._renewal_tried_at = time.monotonic()
        fetch = self._renew_untraced if background else telemetry.in_callers_trace(self._fetch)
        thread = threading.Thread(target=fetch, args=(done,), name="service-token", daemon=True)
        thread.start()
        if background:
            log.info("renewing the service token ahead of its expiry")
        return done

    def _renew_untraced(self, done: threading.Event) -> None:
        with telemetry.untraced():
            self._fetch(done)

    def _fetch(self, done: threading.Event) -> None:
        """Fetch a token from customers (no lock held) and publish the outcome."""
        token: str | None = None
        error: DependencyUnavailable | None = None
        try:
            token, expires_at = self._request_token()
        except DependencyUnavailable as exc:
            error = exc
            log.warning("service token renewal failed: %s", exc.detail)
        except Exception:
            log.exception("service token renewal failed")
            error = DependencyUnavailable("customers")
        with self._lock:
            if token is not None:
                self._token, self._expires_at, self._error = token, expires_at, None
            else:
                self._error = error
            self._fetching = None
        done.set()

    def _request_token(self) -> tuple[str, float]:
        """One client-credentials grant: ``(token, expires_at)`` or DependencyUnavailable."""
        response = self._customers.post(
            "/auth/service-token",
            json={"client_id": self.client_id, "client_secret": self.client_secret},
            auth=False,
        )
        if response.status != 200:
            if response.status >= 500:
                raise DependencyUnavailable("customers")
            # A refused secret is a deployment fault, not the caller's: answer
            # 503 like any other unusable dependency, and say why in the logs.
            log.error("customers refused our service credentials (%s)", response.status)
            raise DependencyUnavailable(
                "customers", "This service could not authenticate to the customers service."
            )
        token = response.body.get("access_token")
        try:
            if not isinstance(token, str):
                raise jwt.DecodeError("no access_token")
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise DependencyUnavailable(
                "customers", "The customers service sent no usable token."
            ) from exc
        return token, float(claims.get("exp", time.time() + 60))


def _timed_out(exc: urllib3.exceptions.HTTPError) -> bool:
    """Whether ``exc`` is an attempt that got no answer in time.

    urllib3 makes a refused connection (``NewConnectionError``) a subclass of
    ``ConnectTimeoutError``; it was answered at once, so it counts as one failed
    call like any other error, not as a timeout of each attempt.
    """
    return isinstance(exc, urllib3.exceptions.TimeoutError) and not isinstance(
        exc, urllib3.exceptions.NewConnectionError
    )


class ServiceClient:
    """Calls one other service (``name`` at ``base_url``) with retries and a deadline.

    A logical call never outlives ``deadline_s`` nor the current request's
    deadline (:mod:`shopkit.deadline`), whose remainder it passes on. Calls go
    through the dependency's bulkhead and circuit breaker
    (:mod:`shopkit.breaker`), and through any live fault switched on for the
    dependency (:mod:`shopkit.faults`).
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        tokens: ServiceTokenProvider | None = None,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 5.0,
        retries: int = 2,
        deadline_s: float = 8.0,
        backoff_s: float = 0.1,
        pool_size: int = 16,
        max_concurrent: int = 3,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.retries = retries
        self.deadline_s = deadline_s
        self.backoff_s = backoff_s
        self.guard = DependencyGuard(name, max_concurrent=max_concurrent)
        self._http = JsonHttp(pool_size)

    def _headers(self, idempotency_key: str | None, token: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        request_id = current_request_id()
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        auth: bool = True,
        bearer: str | None = None,
    ) -> ServiceResponse:
        """Send one logical call, retrying transient failures until the deadline.

        ``bearer`` sends that token (a user's, for a front end acting for them)
        instead of this client's service token.

        Returns the callee's final answer (any status below 500, a 5xx that
        is not retryable, or one that reports a failure further down). Raises
        :class:`DependencyUnavailable` when the callee cannot be reached or keeps
        failing until retries or the deadline run out, and at once while its
        circuit is open or its bulkhead full.
        """
        budget = deadline.bounded(self.deadline_s)
        if budget <= 0:
            raise DependencyUnavailable(
                self.name, f"No time was left to call the {self.name} service."
            )
        renewable = bearer is None and auth and self.tokens is not None
        token = (
            bearer
            if bearer is not None
            else (
                self.tokens.token() if renewable else None  # type: ignore[union-attr]
            )
        )
        call = _Call(method, self.base_url + path, json, params, idempotency_key, token, renewable)
        try:
            with self.guard.bulkhead.slot():
                call.trial = self.guard.breaker.before_call()
                try:
                    result = self._attempts(call, path, time.monotonic() + budget)
                except BaseException:
                    if not call.told:
                        self.guard.breaker.failed(call.trial)
                    raise
                if result.failed:
                    self.guard.breaker.failed(call.trial)
                else:
                    self.guard.breaker.succeeded(call.trial)
                return result
        except Rejected as exc:
            raise DependencyUnavailable(
                self.name, f"The {self.name} service is unavailable ({exc}); try again shortly."
            ) from exc

    def _attempts(self, call: _Call, path: str, call_deadline: float) -> ServiceResponse:
        renewed = False
        attempt = 0
        while True:
            remaining = call_deadline - time.monotonic()
            if remaining <= 0:
                raise DependencyUnavailable(self.name)
            timeout = urllib3.Timeout(
                connect=min(self.connect_timeout_s, remaining),
                read=min(self.read_timeout_s, remaining),
            )
            headers = self._headers(call.idempotency_key, call.token)
            headers[deadline.HEADER] = str(max(1, int(remaining * 1000)))
            call.told = False
            try:
                faults.before_outgoing(
                    self.name, call.method, path, min(self.read_timeout_s, remaining)
                )
                result = self._http.request(
                    call.method,
                    call.url,
                    json_body=call.json,
                    params=call.params,
                    headers=headers,
                    timeout=timeout,
                )
            except urllib3.exceptions.HTTPError as exc:
                DEPENDENCY_ERRORS.labels(dependency=self.name).inc()
                log.warning("call to %s %s failed: %s", self.name, path, type(exc).__name__)
                if _timed_out(exc):
                    call.told = True  # a timeout counts at once (shopkit.breaker)
                    opened = self.guard.breaker.timed_out(call.trial)
                    call.trial = False  # a timed-out trial has reopened the circuit
                    if opened:
                        raise DependencyUnavailable(self.name) from exc
            else:
                if result.status == 401 and call.renewable and not renewed:
                    assert self.tokens is not None
                    call.token = self.tokens.token(force_renew=True)
                    renewed = True
                    continue
                if result.status in RETRY_STATUSES and result.failed:
                    DEPENDENCY_ERRORS.labels(dependency=self.name).inc()
                elif result.code != "idempotency_key_in_use":
                    return result
            # Here the call failed in a way worth retrying.
            attempt += 1
            if attempt > self.retries:
                raise DependencyUnavailable(self.name)
            pause = self.backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random())  # noqa: S311
            if time.monotonic() + pause >= call_deadline:
                raise DependencyUnavailable(self.name)
            time.sleep(pause)

    def get(self, path: str, **kwargs: Any) -> ServiceResponse:
        """``GET`` ``path``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> ServiceResponse:
        """``POST`` ``path``."""
        return self.request("POST", path, **kwargs)
