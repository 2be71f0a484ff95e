"""JSON over HTTP on urllib3's connection pools: one request, one answer, no policy.

:class:`~shopkit.service_client.ServiceClient` adds the policy (deadlines,
retries, tokens, faults) on top; the JWKS fetch of :mod:`shopkit.auth` uses the
transport alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import urllib3

USER_AGENT = "shop-service-client"
#: Problem codes of a 5xx that a healthy callee answers about something further down:
#: the order is recorded and settles by itself (``sale_pending``), or one of the
#: callee's own dependencies could not be reached. They are answers: returned at once,
#: never retried (a retry would only repeat the callee's own retries, or drop the news
#: that an order exists) and never counted against the callee's circuit.
DOWNSTREAM_CODES = frozenset({"sale_pending", "dependency_unavailable", "auth_unavailable"})


@dataclass(frozen=True)
class ServiceResponse:
    """A callee's answer: status code, decoded JSON body (``{}`` if none), and whether
    the callee replayed it from its idempotency store (``Idempotent-Replayed: true``)."""

    status: int
    body: dict[str, Any]
    replayed: bool = False

    @property
    def ok(self) -> bool:
        """True for 2xx."""
        return 200 <= self.status < 300

    @property
    def code(self) -> str | None:
        """The problem ``code`` of an error answer."""
        value = self.body.get("code")
        return value if isinstance(value, str) else None

    @property
    def failed(self) -> bool:
        """True when the callee itself failed: a 5xx that does not report a failure further
        down (:data:`DOWNSTREAM_CODES`)."""
        return self.status >= 500 and self.code not in DOWNSTREAM_CODES


class JsonHttp:
    """A thin JSON-over-HTTP transport on urllib3's connection pools.

    It never retries or follows redirects by itself (:class:`ServiceClient`
    decides what to retry), and never goes through a proxy named in the
    environment: calls go to the configured service URLs. ``requests`` did the
    same job for more CPU per call (bench/README.md).
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
        return ServiceResponse(
            response.status,
            _json_body(response.data),
            replayed=response.headers.get("Idempotent-Replayed") == "true",
        )


def _json_body(data: bytes) -> dict[str, Any]:
    if not data:
        return {}
    try:
        body = json.loads(data)
    except ValueError:
        return {"detail": data[:200].decode(errors="replace")}
    return body if isinstance(body, dict) else {"items": body}
