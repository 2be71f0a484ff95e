"""Bearer-token verification and role checks.

The customers service issues RS256 JWTs and publishes its public keys at
``/.well-known/jwks.json``. Every service verifies tokens offline against
those keys: the other services through :class:`JwksKeyResolver` (fetched over
HTTP and cached), the customers service against its own key store.

Token claims: ``iss`` (:data:`ISSUER`), ``aud`` (:data:`AUDIENCE`), ``sub``
(username or service name), ``role`` (``customer``, ``admin`` or
``service``), ``cid`` (customer id, absent for services), ``typ``
(``access`` or ``refresh``), ``iat``, ``exp`` and ``jti``.

Every service is its own identity: a ``service`` token's subject names the
service that asked for it (``POST /auth/service-token`` with that service's
own secret), and every internal endpoint names the services it accepts
(:func:`requires_caller`); any other service gets 403 ``forbidden_caller``.
A customer's token is refused everywhere (401 ``account_inactive``) once the
account is deactivated: services re-read the list of deactivated accounts
from the customers service every few seconds (:class:`DeactivatedAccounts`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import jwt
from flask import Flask, current_app, g, request
from flask_smorest import Blueprint
from flask_smorest.utils import load_info_from_docstring

from shopkit.errors import Forbidden, ProblemError, Unauthorized
from shopkit.registry import SERVICE_NAMES

if TYPE_CHECKING:
    from shopkit.json_http import JsonHttp, ServiceResponse

log = logging.getLogger(__name__)

ISSUER = "shop-customers"
AUDIENCE = "shop"
ALGORITHM = "RS256"

ROLE_CUSTOMER = "customer"
ROLE_ADMIN = "admin"
ROLE_SERVICE = "service"
ROLES = (ROLE_CUSTOMER, ROLE_ADMIN, ROLE_SERVICE)
#: The service identities (``client_id`` of the client-credentials grant).
SERVICES = SERVICE_NAMES

#: The OpenAPI security requirement added to every protected operation.
BEARER_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject, role and (for people) customer id."""

    subject: str
    role: str
    customer_id: int | None = None

    @property
    def is_admin(self) -> bool:
        """True for the ``admin`` role."""
        return self.role == ROLE_ADMIN

    @property
    def is_service(self) -> bool:
        """True for the ``service`` role (another Shop service)."""
        return self.role == ROLE_SERVICE


class KeyResolver(Protocol):
    """Finds the public key that verifies a token signed with key id ``kid``."""

    def public_key(self, kid: str) -> Any:
        """Return the key for ``kid`` or raise :class:`Unauthorized` if there is none."""


class _KeysUnavailable(Exception):
    """The JWKS could not be fetched (connection error, timeout or an error status)."""


class JwksKeyResolver:
    """Public keys from a JWKS URL, cached in memory.

    The key set is fetched on first use, refreshed when a token names an
    unknown key (at most once per ``min_refetch_s``) or when older than
    ``ttl_s``. If the refresh fails, keys already known keep working, so a
    short outage of the customers service does not stop token checks.
    """

    def __init__(
        self, url: str, *, ttl_s: float = 300, min_refetch_s: float = 5, timeout_s: float = 3
    ) -> None:
        self.url = url
        self.ttl_s = ttl_s
        self.min_refetch_s = min_refetch_s
        self.timeout_s = timeout_s
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._attempted_at = 0.0
        self._lock = threading.Lock()
        self._http: JsonHttp | None = None  # made on first use: customers never fetches

    def _refresh(self) -> None:
        # Imported here: the customers service resolves keys from its own store and
        # never loads an HTTP client (memory per worker, bench/README.md).
        import urllib3  # noqa: PLC0415

        from shopkit.json_http import JsonHttp  # noqa: PLC0415

        if self._http is None:
            self._http = JsonHttp(2)
        self._attempted_at = time.monotonic()
        try:
            response = self._http.request(
                "GET", self.url, headers={}, timeout=urllib3.Timeout(total=self.timeout_s)
            )
        except urllib3.exceptions.HTTPError as exc:
            raise _KeysUnavailable(str(exc)) from exc
        if response.status != 200:
            raise _KeysUnavailable(f"status {response.status}")
        key_set = jwt.PyJWKSet.from_dict(response.body)
        self._keys = {key.key_id: key.key for key in key_set.keys if key.key_id}
        self._fetched_at = time.monotonic()

    def public_key(self, kid: str) -> Any:
        """Return the key for ``kid``, fetching the key set when needed.

        Fetches happen at most once per ``min_refetch_s``, even while no key is
        known at all: while the customers service is away, token checks answer
        503 at once instead of each waiting on the network.
        """
        with self._lock:
            now = time.monotonic()
            stale = now - self._fetched_at > self.ttl_s
            unknown = kid not in self._keys
            if (unknown or stale) and now - self._attempted_at >= self.min_refetch_s:
                try:
                    self._refresh()
                except (_KeysUnavailable, ValueError, jwt.PyJWTError) as exc:
                    if unknown:
                        raise _keys_unavailable() from exc
            elif not self._keys:
                raise _keys_unavailable()  # the last attempt just failed
            key = self._keys.get(kid)
        if key is None:
            raise Unauthorized("The token was signed with an unknown key.", code="invalid_token")
        return key


def _keys_unavailable() -> ProblemError:
    # Its own code: nothing was done (no sale recorded), unlike 503 ``sale_pending``.
    return ProblemError(
        503,
        "auth_unavailable",
        "The token signing keys could not be fetched; nothing was done. Try again shortly.",
        headers={"Retry-After": "2"},
    )


class StaticKeyResolver:
    """Keys given up front (``{kid: public_key}``): for tools and unit tests."""

    def __init__(self, keys: dict[str, Any]) -> None:
        self.keys = keys

    def public_key(self, kid: str) -> Any:
        """Return the key for ``kid``."""
        try:
            return self.keys[kid]
        except KeyError:
            raise Unauthorized(
                "The token was signed with an unknown key.", code="invalid_token"
            ) from None


class TokenVerifier:
    """Checks signature, issuer, audience, expiry and type of a JWT.

    An access token that verified is remembered (at most ``cache_size`` tokens,
    each for at most ``cache_ttl_s`` seconds): callers present the same token on
    every request (a service token is reused for all its calls), and a full
    verification (RSA signature, PyJWT's parsing and checks) costs CPU three
    times per sale (figures in ``bench/README.md``). A remembered token is
    still refused once it expires. The cache holds nothing a full verification
    could later reject except a token signed by a key retired meanwhile, which the
    JWKS cache (``ttl_s``, 300 s) already accepts for longer. Refresh tokens are
    always verified in full.
    """

    def __init__(
        self,
        resolver: KeyResolver,
        *,
        leeway_s: int = 10,
        cache_size: int = 1024,
        cache_ttl_s: float = 60.0,
        max_lifetime_s: dict[str, int] | None = None,
        deactivated: DeactivatedAccounts | None = None,
    ) -> None:
        self.resolver = resolver
        #: The longest lifetime (``exp - iat``) accepted per token type: the configured TTLs.
        self.max_lifetime_s = max_lifetime_s or {"access": 15 * 60, "refresh": 7 * 24 * 3600}
        self.deactivated = deactivated
        self.leeway_s = leeway_s
        self.cache_size = cache_size
        self.cache_ttl_s = cache_ttl_s
        # token -> (principal, its exp claim, when it was verified); oldest first
        self._verified: dict[str, tuple[Principal, float, float]] = {}
        self._verified_lock = threading.Lock()

    def decode(self, token: str, *, expected_type: str = "access") -> dict[str, Any]:
        """Return the verified claims of ``token`` or raise :class:`Unauthorized`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("The bearer token is malformed.", code="invalid_token") from None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str):
            raise Unauthorized("The bearer token is not signed by Shop.", code="invalid_token")
        key = self.resolver.public_key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=self.leeway_s,
                options={"require": ["exp", "iat", "sub", "role", "typ"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired.", code="token_expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("The token is not valid.", code="invalid_token") from None
        if claims.get("typ") != expected_type or claims.get("role") not in ROLES:
            raise Unauthorized("The token is not valid here.", code="invalid_token")
        lifetime = claims["exp"] - claims["iat"]
        if not isinstance(lifetime, int | float) or lifetime > self.max_lifetime_s.get(
            expected_type, 0
        ):
            raise Unauthorized(
                "The token lives longer than this service issues tokens for.", code="invalid_token"
            )
        return claims

    def principal(self, token: str) -> Principal:
        """Verify an access token and return who it speaks for."""
        now = time.time()
        remembered = self._verified.get(token)
        if remembered is not None and now - remembered[2] <= self.cache_ttl_s:
            principal, expires_at, _verified_at = remembered
            if now >= expires_at + self.leeway_s:
                raise Unauthorized("The token has expired.", code="token_expired")
            return self._still_active(principal)
        claims = self.decode(token)
        customer_id = claims.get("cid")
        principal = Principal(
            subject=str(claims["sub"]),
            role=str(claims["role"]),
            customer_id=int(customer_id) if customer_id is not None else None,
        )
        if self.cache_size > 0:
            with self._verified_lock:
                self._verified.pop(token, None)
                while len(self._verified) >= self.cache_size:
                    del self._verified[next(iter(self._verified))]
                self._verified[token] = (principal, float(claims["exp"]), now)
        return self._still_active(principal)

    def _still_active(self, principal: Principal) -> Principal:
        """Refuse a customer whose account was deactivated after the token was issued."""
        if (
            self.deactivated is not None
            and principal.customer_id is not None
            and self.deactivated.contains(principal.customer_id)
        ):
            raise Unauthorized("The account is deactivated.", code="account_inactive")
        return principal


class _Getter(Protocol):
    """What :class:`DeactivatedAccounts` needs of a client: a bounded ``GET``
    (:class:`~shopkit.service_client.ServiceClient`'s, which raises a 503 problem when the
    service cannot be reached)."""

    def get(self, path: str) -> ServiceResponse: ...


class DeactivatedAccounts:
    """The ids of deactivated customer accounts, re-read from the customers service.

    ``GET /internal/deactivated-accounts`` is fetched at most every ``refresh_s``
    seconds, lazily, by whichever request needs it first (the others use the
    list they have meanwhile). If the customers service cannot answer, the last
    list stays in use: a short outage does not lock everyone out.
    """

    def __init__(self, client: _Getter, *, refresh_s: float = 10.0) -> None:
        self.client = client
        self.refresh_s = refresh_s
        self._ids: frozenset[int] = frozenset()
        self._attempted_at = float("-inf")
        self._lock = threading.Lock()

    def contains(self, customer_id: int) -> bool:
        """True if the account ``customer_id`` was deactivated (as of the last refresh)."""
        if time.monotonic() - self._attempted_at >= self.refresh_s and self._lock.acquire(
            blocking=False
        ):
            try:
                self._attempted_at = time.monotonic()
                self._refresh()
            finally:
                self._lock.release()
        return customer_id in self._ids

    def assume(self, ids: frozenset[int]) -> None:
        """Take ``ids`` as the list as of now; the next refresh is ``refresh_s`` away.

        For a process that outlives its database's contents (a test app while the
        tables are emptied and ids start again at 1): a list read earlier would name
        the new accounts that reuse old ids.
        """
        with self._lock:
            self._ids = ids
            self._attempted_at = time.monotonic()

    def _refresh(self) -> None:
        try:
            response = self.client.get("/internal/deactivated-accounts")
        except ProblemError as exc:  # DependencyUnavailable: keep the last list
            log.warning("deactivated accounts not refreshed: %s", exc.detail)
            return
        ids = response.body.get("customer_ids")
        if response.status != 200 or not isinstance(ids, list):
            log.warning("deactivated accounts not refreshed: status %s", response.status)
            return
        self._ids = frozenset(int(i) for i in ids)


def init_auth(app: Flask, verifier: TokenVerifier) -> None:
    """Attach the token verifier that :func:`current_principal` uses."""
    app.extensions["shop_auth"] = verifier


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def current_principal() -> Principal | None:
    """Return the caller of the current request, or ``None`` when anonymous.

    A present but invalid token is an error (401), never silently anonymous.
    """
    if "principal" in g:
        return g.principal  # type: ignore[no-any-return]
    token = _bearer_token()
    principal = None
    if token is not None:
        verifier: TokenVerifier = current_app.extensions["shop_auth"]
        principal = verifier.principal(token)
    elif request.headers.get("Authorization"):
        raise Unauthorized("Use an 'Authorization: Bearer <token>' header.")
    g.principal = principal
    return principal


def require_principal(*roles: str) -> Principal:
    """Return the caller, or raise 401 (anonymous) / 403 (role not in ``roles``)."""
    principal = current_principal()
    if principal is None:
        raise Unauthorized()
    if roles and principal.role not in roles:
        raise Forbidden(f"This needs the role {' or '.join(roles)}.")
    return principal


def is_self_or_admin(principal: Principal | None, username: str) -> bool:
    """Whether ``principal`` is an admin or the customer named ``username`` (any case)."""
    if principal is None:
        return False
    if principal.is_admin:
        return True
    # Usernames are case-insensitive; token subjects are stored lower-case.
    return principal.role == ROLE_CUSTOMER and principal.subject == username.lower()


def ensure_self_or_admin(principal: Principal, username: str) -> None:
    """Allow admins and the customer named ``username``; refuse everyone else with 403."""
    if not is_self_or_admin(principal, username):
        raise Forbidden("You may only act on your own account.")


def ensure_caller(principal: Principal, callers: Collection[str]) -> None:
    """Refuse a ``service`` principal that is not one of ``callers`` (403 ``forbidden_caller``)."""
    if principal.is_service and principal.subject not in callers:
        raise ProblemError(
            403,
            "forbidden_caller",
            f"The {principal.subject} service may not call this; it accepts "
            f"{', '.join(sorted(callers))}.",
        )


def access_text(roles: Collection[str], callers: Collection[str] | None = None) -> str:
    """Who may call an operation, as Markdown for its OpenAPI description."""
    who = " or ".join(f"`{role}`" for role in roles) if roles else "any role"
    text = f"**Access:** a bearer token with role {who}"
    if callers:
        text += "; services: " + ", ".join(f"`{caller}`" for caller in sorted(callers))
    return text + "."


def requires(*roles: str, callers: Collection[str] | None = None) -> Callable[[F], F]:
    """View decorator: the caller must hold one of ``roles`` (any role if none given).

    When ``roles`` admits services, ``callers`` must name the services accepted:
    least privilege is declared per endpoint, never implied. It also documents the
    bearer security requirement (and the accepted services) in the OpenAPI spec.
    """
    if callers is not None:
        unknown = set(callers) - set(SERVICES)
        if unknown or not callers:
            raise TypeError(f"callers must name known services, got {sorted(callers)}")
    elif ROLE_SERVICE in roles or not roles:
        raise TypeError("an endpoint open to service tokens must name its callers")

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = require_principal(*roles)
            if callers is not None:
                ensure_caller(principal, callers)
            return view(*args, **kwargs)

        docstring = load_info_from_docstring(view.__doc__ or "").get("description", "")
        description = "\n\n".join(filter(None, [docstring, access_text(roles, callers)]))
        doc: dict[str, Any] = {
            "security": BEARER_SECURITY,
            "x-roles": list(roles),
            "description": description,
        }
        if callers is not None:
            doc["x-shop-callers"] = sorted(callers)
        return Blueprint.doc(**doc)(wrapper)  # type: ignore[no-any-return]

    return decorator


def requires_caller(*services: str, admins: bool = False) -> Callable[[F], F]:
    """View decorator of an internal endpoint: only ``services`` (and admins if ``admins``).

    ``@requires_caller("sales")`` admits the sales service's token alone; any
    other service gets 403 ``forbidden_caller``, customers 403 ``forbidden``.
    """
    roles = (ROLE_SERVICE, ROLE_ADMIN) if admins else (ROLE_SERVICE,)
    return requires(*roles, callers=services)
