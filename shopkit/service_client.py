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

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
import requests
from requests.adapters import HTTPAdapter

from shopkit.errors import ProblemError
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


def _session(pool_size: int) -> requests.Session:
    session = requests.Session()
    # Calls go to the configured service URLs, never through a proxy named in the
    # environment. Not trusting it also spares requests a scan of all of os.environ
    # (proxy and netrc lookups) on every call: 0.2-0.45 ms of the ~1.9 ms of CPU a
    # call costs the caller (bench/README.md).
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


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
        self.url = customers_url.rstrip("/") + "/auth/service-token"
        self.client_id = client_id
        self.client_secret = client_secret
        self.timeout_s = timeout_s
        self.renew_before_s = renew_before_s
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self._http = _session(4)

    def token(self, *, force_renew: bool = False) -> str:
        """A valid service token, renewed when it is about to expire or when forced."""
        with self._lock:
            if (
                not force_renew
                and self._token
                and time.time() < self._expires_at - self.renew_before_s
            ):
                return self._token
            try:
                response = self._http.post(
                    self.url,
                    json={"client_id": self.client_id, "client_secret": self.client_secret},
                    timeout=self.timeout_s,
                )
            except requests.RequestException as exc:
                raise DependencyUnavailable("customers") from exc
            if response.status_code != 200:
                if response.status_code >= 500:
                    raise DependencyUnavailable("customers")
                # A refused secret is a deployment fault, not the caller's: answer
                # 503 like any other unusable dependency, and say why in the logs.
                log.error("customers refused our service credentials (%s)", response.status_code)
                raise DependencyUnavailable(
                    "customers", "This service could not authenticate to the customers service."
                )
            token = response.json()["access_token"]
            claims = jwt.decode(token, options={"verify_signature": False})
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
        self._http = _session(pool_size)

    def _headers(self, idempotency_key: str | None, auth: bool, renew: bool) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        request_id = current_request_id()
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if auth and self.tokens is not None:
            headers["Authorization"] = f"Bearer {self.tokens.token(force_renew=renew)}"
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
    ) -> ServiceResponse:
        """Send one logical call, retrying transient failures until the deadline.

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
            timeout = (min(self.connect_timeout_s, remaining), min(self.read_timeout_s, remaining))
            retryable = False
            try:
                response = self._http.request(
                    method,
                    url,
                    json=json,
                    params=params,
                    headers=self._headers(idempotency_key, auth, renew=False),
                    timeout=timeout,
                )
            except requests.RequestException as exc:
                log.warning("call to %s %s failed: %s", self.name, path, type(exc).__name__)
                retryable = True
            else:
                result = ServiceResponse(response.status_code, _json_body(response))
                if response.status_code == 401 and auth and self.tokens is not None and not renewed:
                    self.tokens.token(force_renew=True)
                    renewed = True
                    continue
                if result.status in RETRY_STATUSES or result.code == "idempotency_key_in_use":
                    retryable = True
                else:
                    return result
            attempt += 1
            if not retryable or attempt > self.retries:
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


def _json_body(response: requests.Response) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:200]}
    return body if isinstance(body, dict) else {"items": body}
