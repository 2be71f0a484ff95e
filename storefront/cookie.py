"""The session cookie: encrypted, and worthless once its session is logged out.

Flask's default cookie is signed but readable, and the storefront's session
holds the user's access and refresh tokens. Here the whole session is
encrypted and authenticated with Fernet (AES-128-CBC plus HMAC-SHA256, from
``cryptography``) under a key derived from ``STOREFRONT_SECRET_KEY``: the
browser holds a blob nobody can read or alter, and Fernet's timestamp bounds
its age to the session's lifetime.

A copy of the cookie taken before a logout would still decrypt, so each login
gets a random session id (``sid``) and logging out puts it on
:class:`RevokedSessions`, which :func:`drop_revoked` checks on every request.
The list lives in the storefront process (one replica, see
deploy/k8s/base/storefront.yaml); after a restart an old copy is refused as
soon as its access token needs renewing, because logout also revoked the
refresh token at the customers service.
"""

from __future__ import annotations

import base64
import functools
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, current_app, request, session
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from itsdangerous import BadSignature

SID = "sid"


class FernetSerializer:
    """What Flask's cookie session needs of a serializer (``dumps``, ``loads``), encrypting."""

    def __init__(self, secret: str | bytes) -> None:
        material = secret.encode() if isinstance(secret, str) else secret
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"shop-storefront-session"
        ).derive(material)
        self._fernet = Fernet(base64.urlsafe_b64encode(key))
        self._json = TaggedJSONSerializer()

    def dumps(self, value: dict[str, Any]) -> str:
        """The session as an encrypted, authenticated token (compressed first: tokens are long)."""
        return self._fernet.encrypt(zlib.compress(self._json.dumps(value).encode())).decode()

    def loads(self, value: str | bytes, max_age: int | None = None) -> Any:
        """The session back; :class:`BadSignature` for anything altered, foreign or too old."""
        token = value.encode() if isinstance(value, str) else value
        try:
            data = self._fernet.decrypt(token, ttl=max_age)
            return self._json.loads(zlib.decompress(data).decode())
        except (InvalidToken, zlib.error, ValueError) as exc:
            raise BadSignature("The session cookie cannot be opened.") from exc


@functools.lru_cache(maxsize=2)
def _serializer(secret: str | bytes) -> FernetSerializer:
    """One serializer per secret key: its key derivation runs once, not twice a request."""
    return FernetSerializer(secret)


class EncryptedSessionInterface(SecureCookieSessionInterface):
    """Flask's cookie session with :class:`FernetSerializer` instead of a signature."""

    def get_signing_serializer(self, app: Flask) -> FernetSerializer | None:  # type: ignore[override]
        """The serializer of the app's secret key (``None`` without one: no session)."""
        if not app.secret_key:
            return None
        return _serializer(app.secret_key)

    def should_set_cookie(self, app: Flask, session: SessionMixin) -> bool:
        """Never from a static file's answer: a page's styles and scripts load beside it,
        and their answers must not replace the cookie the page's own answer set (its
        form's CSRF token, a session just opened in place of a logged-out one)."""
        if request.endpoint == "static":
            return False
        return super().should_set_cookie(app, session)


class RevokedSessions:
    """The ids of logged-out sessions, each kept as long as its cookie could live."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}
        #: Told each revoked session id (the live order streams end theirs at once).
        self.listeners: list[Callable[[str], None]] = []

    def revoke(self, sid: str) -> None:
        """Refuse every copy of this session's cookie from now on."""
        now = time.monotonic()
        with self._lock:
            self._until = {s: t for s, t in self._until.items() if t > now}
            self._until[sid] = now + self.keep_s
        for listener in self.listeners:
            listener(sid)

    def __contains__(self, sid: object) -> bool:
        with self._lock:
            until = self._until.get(str(sid))
        return until is not None and until > time.monotonic()


def revoked() -> RevokedSessions:
    """The app's list of logged-out sessions."""
    return current_app.extensions["shop_revoked_sessions"]  # type: ignore[no-any-return]


def drop_revoked() -> None:
    """Before each request: a cookie of a logged-out session opens an empty session."""
    if request.endpoint == "static":
        return  # static files read no session (and set no cookie: should_set_cookie)
    sid = session.get(SID)
    if sid is not None and sid in revoked():
        session.clear()


def init_cookie_sessions(app: Flask, keep_s: float) -> None:
    """Encrypt the app's session cookie and refuse the cookies of logged-out sessions."""
    app.session_interface = EncryptedSessionInterface()
    app.extensions["shop_revoked_sessions"] = RevokedSessions(keep_s)
    app.before_request(drop_revoked)
