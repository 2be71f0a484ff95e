"""HTTP client for calls between services.

Every call has a connect and read timeout, an overall deadline, and a
bounded number of retries with jittered backoff on connection errors,
timeouts, 502/503/504 and ``409 idempotency_key_in_use``. Retrying a POST
is safe because every state-changing call carries an ``Idempotency-Key``:
the callee replays its stored answer instead of acting twice. The current
``X-Request-ID`` is passed on, and a ``service`` token is obtained by the
client-credentials grant and renewed before it expires (or on a 401).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
import urllib3

from shopkit.errors import ProblemError
from shopkit.request_id import HEADER as REQUEST_ID_HEADER
from shopkit.request_id import current_request_id

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})
USER_AGENT = "shop-service-client"


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


@dataclass(frozen=True)
class ServiceResponse:
    """A callee's answer: status code and decoded JSON body (``{}`` if none)."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        """True for 2xx."""
        return 200 <= self.status < 300

    @property
    def code(self) -> str | None:
        """The problem ``code`` of an error answer."""
        value = self.body.get("code")
        return value if isinstance(value, str) else None


class JsonHttp:
    """A thin JSON-over-HTTP transport on urllib3's connection pools.

    It never retries or follows redirects by itself (:class:`ServiceClient`
    decides what to retry), and never goes through a proxy named in the
    environment: calls go to the configured service URLs. ``requests`` did the
    same job for about twice the CPU (0.9 ms more per call, bench/README.md).
    """

    def __init__(self, pool_size: int) -> None:
        self._pools = urllib3.PoolManager(
            num_pools=4, maxsize=pool_size, retries=False, headers={"User-Agent": USER_AGENT}
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str],
        timeout: urllib3.Timeout,
    ) -> ServiceResponse:
        """Send one request; raises ``urllib3.exceptions.HTTPError`` if no answer came."""
        if params:
            url = f"{url}?{urlencode(params, doseq=True)}"
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers = {**headers, "Content-Type": "application/json"}
        response = self._pools.request(
            method, url, body=body, headers=headers, timeout=timeout, redirect=False
        )
        return ServiceResponse(response.status, _json_body(response.data))


class ServiceTokenProvider:
    """Obtains and caches a ``service`` access token from the customers service."""

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
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
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
        """A valid service token, renewed when it is about to expire or when forced."""
        with self._lock:
            if (
                not force_renew
                and self._token
                and time.time() < self._expires_at - self.renew_before_s
            ):
                return self._token
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
            self._token = token
            self._expires_at = float(claims.get("exp", time.time() + 60))
            return token


class ServiceClient:
    """Calls one other service (``name`` at ``base_url``) with retries and a deadline."""

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
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.retries = retries
        self.deadline_s = deadline_s
        self.backoff_s = backoff_s
        self._http = JsonHttp(pool_size)

    def _headers(
        self, idempotency_key: str | None, auth: bool, bearer: str | None = None
    ) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        request_id = current_request_id()
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        elif auth and self.tokens is not None:
            headers["Authorization"] = f"Bearer {self.tokens.token()}"
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

        Returns the callee's final answer (any status below 500, or a 5xx that
        is not retryable). Raises :class:`DependencyUnavailable` when the callee
        cannot be reached or keeps failing until retries or the deadline run out.
        """
        deadline = time.monotonic() + self.deadline_s
        url = self.base_url + path
        renewed = False
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DependencyUnavailable(self.name)
            timeout = urllib3.Timeout(
                connect=min(self.connect_timeout_s, remaining),
                read=min(self.read_timeout_s, remaining),
            )
            try:
                result = self._http.request(
                    method,
                    url,
                    json_body=json,
                    params=params,
                    headers=self._headers(idempotency_key, auth, bearer),
                    timeout=timeout,
                )
            except urllib3.exceptions.HTTPError as exc:
                log.warning("call to %s %s failed: %s", self.name, path, type(exc).__name__)
            else:
                if (
                    result.status == 401
                    and auth
                    and bearer is None
                    and self.tokens is not None
                    and not renewed
                ):
                    self.tokens.token(force_renew=True)
                    renewed = True
                    continue
                if result.status not in RETRY_STATUSES and result.code != "idempotency_key_in_use":
                    return result
            # Here the call failed in a way worth retrying.
            attempt += 1
            if attempt > self.retries:
                raise DependencyUnavailable(self.name)
            pause = self.backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random())  # noqa: S311
            if time.monotonic() + pause >= deadline:
                raise DependencyUnavailable(self.name)
            time.sleep(pause)

    def get(self, path: str, **kwargs: Any) -> ServiceResponse:
        """``GET`` ``path``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> ServiceResponse:
        """``POST`` ``path``."""
        return self.request("POST", path, **kwargs)


def _json_body(data: bytes) -> dict[str, Any]:
    if not data:
        return {}
    try:
        body = json.loads(data)
    except ValueError:
        return {"detail": data[:200].decode(errors="replace")}
    return body if isinstance(body, dict) else {"items": body}
