"""Browser-facing hardening headers on every response.

Every answer says ``X-Content-Type-Options: nosniff`` and may not be framed
(``X-Frame-Options: DENY`` and CSP ``frame-ancestors 'none'``). JSON answers
get a CSP that allows nothing at all; the Swagger UI page (``/docs``) gets one
that allows only this service's own files and the page's one inline script,
by its hash, so an injected script would not run.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

from flask import Flask, Response

_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
#: The headers of every answer that is not a page or a static file.
API_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", API_POLICY),
)


def page_policy(html: bytes) -> str:
    """The CSP of an HTML page: own files, its inline scripts by hash, no framing."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def init_security_headers(app: Flask, policy: Callable[[bytes], str] = page_policy) -> None:
    """Add the hardening headers to every response of ``app``; ``policy`` gives an HTML
    page's CSP from its body (default :func:`page_policy`)."""

    @app.after_request
    def _harden(response: Response) -> Response:
        headers = response.headers
        for name, value in API_HEADERS[:-1]:
            headers.setdefault(name, value)
        if response.mimetype == "text/html" and not response.direct_passthrough:
            headers.setdefault("Content-Security-Policy", policy(response.get_data()))
        elif response.mimetype in ("text/css", "text/javascript", "application/javascript"):
            headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        else:
            headers.setdefault("Content-Security-Policy", API_POLICY)
        return response
