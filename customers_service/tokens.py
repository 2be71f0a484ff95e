"""Issuing access, refresh and service tokens (RS256 JWTs, see :mod:`shopkit.auth`)."""

from __future__ import annotations

import hmac
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from customers_service.keys import KeyStore
from customers_service.models import Customer, RefreshToken
from shopkit.auth import ALGORITHM, AUDIENCE, ISSUER, ROLE_SERVICE, SERVICES, TokenVerifier
from shopkit.config import Settings
from shopkit.db import transaction
from shopkit.errors import Unauthorized

#: Names that may ask for a ``service`` token, each with its own secret
#: (``<NAME>_CLIENT_SECRET``, falling back to ``SERVICE_CLIENT_SECRET`` in development).
SERVICE_CLIENTS = SERVICES


def _encode(keys: KeyStore, claims: dict[str, Any]) -> str:
    kid, private_key = keys.signing_key()
    return jwt.encode(claims, private_key, algorithm=ALGORITHM, headers={"kid": kid})


def _claims(subject: str, role: str, token_type: str, ttl_s: int, **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "role": role,
        "typ": token_type,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_s),
        "jti": str(uuid.uuid4()),
        **extra,
    }


def issue_tokens(
    session: Session,
    customer: Customer,
    keys: KeyStore,
    settings: Settings,
    family_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """A new access token and refresh token for ``customer`` (the refresh token is recorded).

    A login starts a new refresh-token family; a refresh passes its family on.
    """
    with transaction(session):
        access = _encode(
            keys,
            _claims(
                customer.username,
                customer.role,
                "access",
                settings.access_token_ttl_s,
                cid=customer.id,
            ),
        )
        refresh_claims = _claims(
            customer.username,
            customer.role,
            "refresh",
            settings.refresh_token_ttl_s,
            cid=customer.id,
        )
        session.add(
            RefreshToken(
                jti=uuid.UUID(refresh_claims["jti"]),
                family_id=family_id or uuid.UUID(refresh_claims["jti"]),
                customer_id=customer.id,
                expires_at=refresh_claims["exp"],
            )
        )
        return {
            "access_token": access,
            "refresh_token": _encode(keys, refresh_claims),
            "token_type": "Bearer",
            "expires_in": settings.access_token_ttl_s,
        }


def refresh_tokens(
    session: Session,
    refresh_token: str,
    verifier: TokenVerifier,
    keys: KeyStore,
    settings: Settings,
) -> dict[str, Any]:
    """Exchange a refresh token for a new pair, rotating it.

    A refresh token works once. Presenting one that was already used revokes
    every refresh token of that account (it was probably stolen).
    """
    record = _refresh_record(session, refresh_token, verifier)
    now = datetime.now(UTC)
    if record.revoked_at is not None:
        with transaction(session):  # the revocation stands although the call is refused
            session.execute(
                update(RefreshToken)
                .where(
                    RefreshToken.customer_id == record.customer_id,
                    RefreshToken.revoked_at.is_(None),
                )
                .values(revoked_at=now)
            )
        raise Unauthorized("The refresh token was already used.", code="invalid_token")
    with transaction(session):
        customer = session.get(Customer, record.customer_id)
        if customer is None or not customer.is_active:
            raise Unauthorized("The account is not active.", code="invalid_token")
        record.revoked_at = now
        return issue_tokens(session, customer, keys, settings, record.family_id)


def _refresh_record(session: Session, refresh_token: str, verifier: TokenVerifier) -> RefreshToken:
    """The stored record of a verified refresh token (locked), or 401."""
    claims = verifier.decode(refresh_token, expected_type="refresh")
    try:
        jti = uuid.UUID(str(claims.get("jti")))
    except ValueError:
        raise Unauthorized("The refresh token is not valid.", code="invalid_token") from None
    record = session.execute(
        select(RefreshToken).where(RefreshToken.jti == jti).with_for_update()
    ).scalar_one_or_none()
    if record is None:
        raise Unauthorized("The refresh token is not valid.", code="invalid_token")
    return record


def logout(session: Session, refresh_token: str, verifier: TokenVerifier) -> None:
    """Revoke the refresh token's whole family (this login on every device it rotated to).

    Idempotent: logging out again with a revoked token changes nothing. Access
    tokens already issued stay valid until they expire (at most ``ACCESS_TOKEN_TTL``).
    """
    with transaction(session):
        record = _refresh_record(session, refresh_token, verifier)
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == record.family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )


def service_token(
    client_id: str, client_secret: str, keys: KeyStore, settings: Settings
) -> dict[str, Any]:
    """A ``service`` access token for a Shop service presenting its own client secret.

    The token's subject is ``client_id``: the endpoints it calls check that name.
    """
    expected = settings.client_secret(client_id) if client_id in SERVICE_CLIENTS else ""
    # Compared even for unknown clients, so the answer takes the same time.
    secret_ok = hmac.compare_digest(client_secret.encode(), (expected or "\0").encode())
    if client_id not in SERVICE_CLIENTS or not secret_ok:
        raise Unauthorized("Unknown client or wrong secret.", code="invalid_client")
    access = _encode(keys, _claims(client_id, ROLE_SERVICE, "access", settings.access_token_ttl_s))
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": settings.access_token_ttl_s,
    }


def revoke_refresh_tokens(session: Session, customer_id: int) -> None:
    """Revoke every live refresh token of a customer (e.g. when deactivated)."""
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.customer_id == customer_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
