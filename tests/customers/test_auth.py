"""Tokens: login, refresh rotation, service credentials, JWKS and verification."""

from __future__ import annotations

import time

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient

from shopkit.auth import AUDIENCE, ISSUER
from tests.support.identity import ADMIN_PASSWORD, SERVICE_SECRET, Identity, bearer


def test_login_returns_bearer_tokens(identity: Identity) -> None:
    profile = identity.register("logan")
    tokens = identity.login("logan", profile["password"])
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "logan"
    assert claims["role"] == "customer"
    assert claims["cid"] == profile["id"]
    assert claims["exp"] - claims["iat"] == 900
    assert jwt.get_unverified_header(tokens["access_token"])["alg"] == "RS256"


def test_login_is_case_insensitive_on_username(identity: Identity) -> None:
    profile = identity.register("mixedcase")
    assert identity.login("MixedCase", profile["password"])["access_token"]


def test_wrong_password_and_unknown_user_look_the_same(
    customers: FlaskClient, identity: Identity
) -> None:
    identity.register("victim")
    wrong = customers.post("/auth/login", json={"username": "victim", "password": "nope-nope"})
    unknown = customers.post("/auth/login", json={"username": "ghost", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json()["code"] == unknown.get_json()["code"] == "invalid_credentials"
    assert wrong.mimetype == "application/problem+json"


def test_bootstrap_admin_can_log_in_and_is_admin(identity: Identity) -> None:
    claims = jwt.decode(identity.admin_token(), options={"verify_signature": False})
    assert claims["role"] == "admin"


def test_bootstrap_admin_is_created_once(customers_app: Flask, identity: Identity) -> None:
    from customers_service import bootstrap

    bootstrap(customers_app)
    bootstrap(customers_app)
    response = identity.client.get("/customers?q=admin", headers=bearer(identity.admin_token()))
    assert [c["username"] for c in response.get_json()["items"]] == ["admin"]


def test_refresh_rotates_and_reuse_revokes(customers: FlaskClient, identity: Identity) -> None:
    profile = identity.register("rotator")
    first = identity.login("rotator", profile["password"])
    renewed = customers.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert renewed.status_code == 200
    second = renewed.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    # Using the old refresh token again looks like theft: refused, and the family is revoked.
    reused = customers.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    after = customers.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert after.status_code == 401


def test_access_token_is_not_a_refresh_token(customers: FlaskClient, identity: Identity) -> None:
    profile = identity.register("mixup")
    tokens = identity.login("mixup", profile["password"])
    response = customers.post("/auth/refresh", json={"refresh_token": tokens["access_token"]})
    assert response.status_code == 401
    refresh_as_access = customers.get("/customers/mixup", headers=bearer(tokens["refresh_token"]))
    assert refresh_as_access.status_code == 401


def test_service_token_needs_the_secret_and_a_known_client(customers: FlaskClient) -> None:
    ok = customers.post(
        "/auth/service-token", json={"client_id": "sales", "client_secret": SERVICE_SECRET}
    )
    assert ok.status_code == 200
    claims = jwt.decode(ok.get_json()["access_token"], options={"verify_signature": False})
    assert claims["role"] == "service"
    assert claims["sub"] == "sales"
    assert "cid" not in claims
    wrong = customers.post(
        "/auth/service-token", json={"client_id": "sales", "client_secret": "guess"}
    )
    assert wrong.status_code == 401
    assert wrong.get_json()["code"] == "invalid_client"
    stranger = customers.post(
        "/auth/service-token", json={"client_id": "mallory", "client_secret": SERVICE_SECRET}
    )
    assert stranger.status_code == 401


def test_customer_credentials_never_give_a_service_token(
    customers: FlaskClient, identity: Identity
) -> None:
    profile = identity.register("sneaky")
    response = customers.post(
        "/auth/service-token", json={"client_id": "sneaky", "client_secret": profile["password"]}
    )
    assert response.status_code == 401
    admin = customers.post(
        "/auth/service-token", json={"client_id": "admin", "client_secret": ADMIN_PASSWORD}
    )
    assert admin.status_code == 401


def test_jwks_publishes_the_key_that_signs(customers: FlaskClient, identity: Identity) -> None:
    token = identity.admin_token()
    keys = customers.get("/.well-known/jwks.json").get_json()["keys"]
    assert keys and all("d" not in key for key in keys)  # public halves only
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(key for key in keys if key["kid"] == kid)
    public = jwt.PyJWK.from_dict(jwk).key
    claims = jwt.decode(token, public, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER)
    assert claims["sub"] == "admin"


def _forged(key: rsa.RSAPrivateKey, kid: str, **claims: object) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "admin", "role": "admin", "typ": "access",
            "iat": now, "exp": now + 600, **claims}  # fmt: skip
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


def test_forged_expired_and_garbage_tokens_are_401(
    customers: FlaskClient, identity: Identity
) -> None:
    real = identity.admin_token()
    kid = jwt.get_unverified_header(real)["kid"]
    attacker_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = _forged(attacker_key, kid)
    for token in (forged, "garbage", real + "x"):
        response = customers.get("/customers", headers=bearer(token))
        assert response.status_code == 401, token[:20]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    none_alg = jwt.encode({"sub": "admin", "role": "admin"}, key=None, algorithm="none")
    assert customers.get("/customers", headers=bearer(none_alg)).status_code == 401
    basic = customers.get("/customers", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert basic.status_code == 401


def test_expired_token_says_so(customers_app: Flask, customers: FlaskClient) -> None:
    keys = customers_app.extensions["customers_keys"]
    kid, private = keys.signing_key()
    expired = _forged(private, kid, iat=int(time.time()) - 3600, exp=int(time.time()) - 1800)
    response = customers.get("/customers", headers=bearer(expired))
    assert response.status_code == 401
    assert response.get_json()["code"] == "token_expired"


def test_deactivated_customer_cannot_log_in(customers: FlaskClient, identity: Identity) -> None:
    profile, token = identity.new_customer()
    refresh = identity.login(profile["username"], profile["password"])["refresh_token"]
    assert (
        customers.delete(f"/customers/{profile['username']}", headers=bearer(token)).status_code
        == 204
    )
    response = customers.post(
        "/auth/login", json={"username": profile["username"], "password": profile["password"]}
    )
    assert response.status_code == 401
    assert customers.post("/auth/refresh", json={"refresh_token": refresh}).status_code == 401
    # An access token issued before deactivation no longer opens the account either.
    assert (
        customers.get(f"/customers/{profile['username']}", headers=bearer(token)).status_code == 401
    )
