"""Answer a blocked login, service-token grant or registration before the app sees it.

A flood against one account is answered with 429 by :mod:`customers_service.throttle`
before any hash, but a request that reaches the Flask app still costs its
routing, request-id, input guard, schema validation, database session, metrics
and logging. Measured with ``bench/security_bench.py``, that work done hundreds
of times a second on the flooded machine's cores slowed other accounts' logins
several-fold. :class:`ThrottleGate` wraps the WSGI app and refuses such a request
from the blocks this process already knows (``throttle.known_block``: no
database, no hash, a ~100-byte body it parses itself) with the same 429
``too_many_attempts`` problem and ``Retry-After``: a 429 costs about half the
worker CPU it did, and what remains is mostly gunicorn's own handling of a
request (figures in bench/README.md, "Figures behind the code").

Its answers count in ``shop_logins_total`` (outcome ``too_many_attempts``) but
leave no access-log line and no per-endpoint HTTP metric: a flood neither fills
the log nor costs the work of recording each request.

The gate is only a shortcut: a request it does not recognise, whose body it
cannot read, or whose buckets this process has not yet seen blocked goes on to
the app, where the throttle reads the blocks of every process from PostgreSQL
(and remembers them for the gate).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from customers_service import throttle
from customers_service.metrics import LOGINS
from shopkit.config import Settings
from shopkit.errors import PROBLEM_MEDIA_TYPE, problem_body
from shopkit.json_provider import encode
from shopkit.proxy import client_address, trusted_networks
from shopkit.request_id import HEADER as REQUEST_ID_HEADER
from shopkit.request_id import new_request_id, valid_request_id
from shopkit.security_headers import API_HEADERS

#: Throttled credential checks: path -> (throttle kind, the JSON member naming the account).
CREDENTIAL_PATHS = {
    "/auth/login": ("login", "username"),
    "/auth/service-token": ("service-token", "client_id"),
}
REGISTRATION_PATH = "/customers"
#: Bodies longer than this go to the app (credentials are well under 1 KiB).
MAX_PEEK_BYTES = 4096

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class ThrottleGate:
    """WSGI middleware: 429 at once for a request whose account or address is known blocked."""

    def __init__(self, app: WsgiApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.networks = trusted_networks(settings.trusted_proxies)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Refuse a known-blocked request, or pass it on to the app unchanged."""
        if not throttle.has_known_blocks() or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        path = environ.get("PATH_INFO", "")
        retry_after = self._blocked(environ, path)
        if retry_after is None:
            return self.app(environ, start_response)
        if path == "/auth/login":
            LOGINS.labels(outcome="too_many_attempts").inc()
        return self._refuse(environ, path, retry_after, start_response)

    def _blocked(self, environ: dict[str, Any], path: str) -> int | None:
        """Seconds to wait if this request's account or address is known blocked."""
        address = client_address(
            environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"), self.networks
        )
        if path == REGISTRATION_PATH:
            return throttle.known_block(
                [throttle.registration_check(self.settings, address).bucket]
            )
        if path not in CREDENTIAL_PATHS:
            return None
        kind, member = CREDENTIAL_PATHS[path]
        subject = _json_member(environ, member)
        if subject is None:
            return None
        checks = throttle.credential_checks(self.settings, kind, subject, address)
        return throttle.known_block(c.bucket for c in checks)

    @staticmethod
    def _refuse(
        environ: dict[str, Any], path: str, retry_after: int, start_response: StartResponse
    ) -> list[bytes]:
        """The 429 ``too_many_attempts`` problem, as the app would answer it."""
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if valid_request_id(incoming) else new_request_id()
        body = encode(
            problem_body(
                429,
                "too_many_attempts",
                f"Too many attempts: try again in {retry_after} s.",
                retry_after=retry_after,
                instance=path,
                request_id=request_id,
            )
        ).encode()
        start_response(
            "429 TOO MANY REQUESTS",
            [
                ("Content-Type", PROBLEM_MEDIA_TYPE),
                ("Content-Length", str(len(body))),
                ("Retry-After", str(retry_after)),
                (REQUEST_ID_HEADER, request_id),
                *API_HEADERS,
            ],
        )
        return [body]


def _json_member(environ: dict[str, Any], member: str) -> str | None:
    """The string ``member`` of a small JSON object body, or ``None``; the body stays readable.

    The body is read here and put back as a fresh stream, so the app reads it as sent.
    """
    if "json" not in environ.get("CONTENT_TYPE", ""):
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None  # chunked or absent: the app deals with it
    if not 0 < length <= MAX_PEEK_BYTES:
        return None
    data = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(data)
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return None  # the app's input guard answers it
    value = body.get(member) if isinstance(body, dict) else None
    return value if isinstance(value, str) else None
