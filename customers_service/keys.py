"""RS256 signing keys, created on first start and kept in the customers schema.

The newest unretired key signs; every unretired key is published in the JWKS
so tokens signed before a rotation keep verifying until they expire.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import select
from sqlalchemy.orm import Session

from customers_service.models import SigningKey
from shopkit.auth import ALGORITHM
from shopkit.db import Database, advisory_xact_lock, transaction
from shopkit.errors import ProblemError, Unauthorized

RELOAD_AFTER_S = 5.0


def _new_key() -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = uuid.uuid4().hex
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
    return SigningKey(kid=kid, private_pem=pem, public_jwk=jwk)


def ensure_signing_key(session: Session) -> SigningKey:
    """Return the active signing key, creating the first one (once, even under races)."""
    with transaction(session):
        advisory_xact_lock(session, "customers", "signing-key")
        key = session.execute(
            select(SigningKey)
            .where(SigningKey.retired_at.is_(None))
            .order_by(SigningKey.created_at.desc())
            .limit(1)
        ).scalar_one_or_none()
        if key is None:
            key = _new_key()
            session.add(key)
        return key


def public_jwks(session: Session) -> dict[str, Any]:
    """The JWKS document with every unretired public key."""
    keys = session.execute(
        select(SigningKey.public_jwk)
        .where(SigningKey.retired_at.is_(None))
        .order_by(SigningKey.created_at.desc())
    ).scalars()
    return {"keys": list(keys)}


class KeyStore:
    """Process-local cache of the signing key and the public keys, loaded from the database.

    It is also the customers service's own :class:`~shopkit.auth.KeyResolver`:
    the service verifies tokens against its keys without calling itself.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self._lock = threading.Lock()
        self._signing: tuple[str, Any] | None = None
        self._public: dict[str, Any] = {}
        self._loaded_at = 0.0

    def _load(self) -> None:
        with self.database.session() as session:
            keys = session.execute(
                select(SigningKey)
                .where(SigningKey.retired_at.is_(None))
                .order_by(SigningKey.created_at.desc())
            ).scalars()
            rows = list(keys)
        if not rows:
            raise ProblemError(503, "not_ready", "No signing key exists yet: run db upgrade.")
        self._loaded_at = time.monotonic()
        newest = rows[0]
        self._signing = (
            newest.kid,
            serialization.load_pem_private_key(newest.private_pem.encode(), password=None),
        )
        self._public = {row.kid: RSAAlgorithm.from_jwk(json.dumps(row.public_jwk)) for row in rows}

    def signing_key(self) -> tuple[str, Any]:
        """``(kid, private_key)`` of the key that signs new tokens."""
        with self._lock:
            if self._signing is None:
                self._load()
            assert self._signing is not None
            return self._signing

    def public_key(self, kid: str) -> Any:
        """The public key ``kid`` (reloading once if it is not known yet)."""
        with self._lock:
            # Unknown kids reload at most once per few seconds, so bogus tokens
            # cannot turn into a query each.
            if kid not in self._public and time.monotonic() - self._loaded_at > RELOAD_AFTER_S:
                self._load()
            key = self._public.get(kid)
        if key is None:
            raise Unauthorized("The token was signed with an unknown key.", code="invalid_token")
        return key
