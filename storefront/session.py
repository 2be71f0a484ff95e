"""Who is logged in: the user's tokens live only in the encrypted, HttpOnly, SameSite session
cookie (:mod:`storefront.cookie`).

Page JavaScript never sees a token. The access token is renewed with the
refresh token shortly before it expires (once for the session's concurrent
requests: :mod:`storefront.renewal`); when that fails (expired, revoked,
account deactivated) the session ends and the user is asked to log in
again. The role shown in the menu comes from the token's claims; the
services check every call themselves, so the claims are read without
verifying the signature here.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import jwt
from flask import abort, current_app, flash, redirect, request, session, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from shopkit.service_client import DependencyUnavailable
from storefront.clients import ApiProblem, Page, ShopApi, Tokens
from storefront.cookie import SID, revoked
from storefront.problems import describe, recorded
from storefront.renewal import RENEWALS

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
#: Answers a refused request: ``(status, message)`` → a response.
Refusal = Callable[[int, str], Any]
#: Renew the access token when it has fewer seconds than this left.
RENEW_BEFORE_S = 60


class LoginRequired(Exception):
    """The page needs a logged-in user (or the session just ended)."""


@dataclass(frozen=True)
class User:
    """The logged-in user as the pages need them."""

    username: str
    role: str
    #: The customer's id (the token's ``cid`` claim), ``None`` for an account without one.
    customer_id: int | None = None

    @property
    def is_admin(self) -> bool:
        """True for the ``admin`` role."""
        return self.role == "admin"


def _customer_id(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def api() -> ShopApi:
    """The app's client of the services."""
    return current_app.extensions["shop_client"]  # type: ignore[no-any-return]


def remember(tokens: Tokens, *, renewed: bool = False) -> User:
    """Keep these tokens in the session; returns who it is.

    A login starts a new session (a new id; any earlier session of this browser is
    refused from now on, copies of its cookie included). ``renewed`` tokens of the same
    login only replace the old ones: the rest of the session stays.
    """
    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    user = User(
        username=str(claims.get("sub", "")),
        role=str(claims.get("role", "customer")),
        customer_id=_customer_id(claims.get("cid")),
    )
    if not renewed:
        earlier = session.get(SID)
        if earlier is not None:
            revoked().revoke(str(earlier))
        session.clear()
        session[SID] = secrets.token_urlsafe(18)
    session.permanent = True
    session["user"] = {"username": user.username, "role": user.role, "cid": user.customer_id}
    session["tokens"] = {
        "access": tokens.access_token,
        "refresh": tokens.refresh_token,
        "expires_at": float(claims.get("exp") or time.time() + tokens.expires_in),
    }
    return user


def forget() -> None:
    """End the session here (the cookie is emptied)."""
    session.clear()


def log_out() -> None:
    """End the session everywhere: the refresh token is revoked at the customers service
    and every copy of this session's cookie is refused from now on."""
    stored = session.get("tokens")
    refresh = stored.get("refresh") if isinstance(stored, dict) else None
    sid = session.get(SID)
    if sid is not None:
        revoked().revoke(str(sid))
    forget()
    if refresh:
        try:
            api().logout(str(refresh))
        except (ApiProblem, DependencyUnavailable) as exc:
            # The session is over here either way; the refresh token then expires by itself.
            log.warning("logout could not revoke the refresh token: %s", exc)


def current_user() -> User | None:
    """The logged-in user, or ``None``."""
    data = session.get("user")
    if not isinstance(data, dict):
        return None
    return User(
        username=str(data.get("username", "")),
        role=str(data.get("role", "customer")),
        customer_id=_customer_id(data.get("cid")),
    )


def token_expires_at() -> float:
    """When the session's access token expires (``time.time()``; 0 without one)."""
    stored = session.get("tokens")
    return float(stored.get("expires_at", 0)) if isinstance(stored, dict) else 0.0


def token() -> str:
    """A valid access token of the logged-in user, renewed when it is about to expire."""
    stored = session.get("tokens")
    if not isinstance(stored, dict) or not stored.get("access"):
        raise LoginRequired
    if time.time() < float(stored.get("expires_at", 0)) - RENEW_BEFORE_S:
        return str(stored["access"])
    if not stored.get("refresh"):
        forget()
        raise LoginRequired
    try:
        # One renewal per session at a time: a refresh token presented twice revokes them all.
        renewed = RENEWALS.renew(str(session.get(SID) or ""), str(stored["refresh"]), api().refresh)
    except ApiProblem:
        forget()
        raise LoginRequired from None
    remember(renewed, renewed=True)
    return renewed.access_token


def login_required(view: F) -> F:
    """Send an anonymous visitor to the login page (and back here afterwards)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return to_login()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def admin_required(view: F) -> F:
    """Refuse (403) anyone but an admin; anonymous visitors go to the login page."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        user = current_user()
        if user is None:
            return to_login()
        if not user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


#: Why an admin is refused a shopper's page.
SHOPPERS_ONLY = "Only shoppers have orders and notifications of their own."


def shopper_required(view: F | None = None, *, refuse: Refusal | None = None) -> Any:
    """Pages of a customer's own (the inbox, the live order stream): an anonymous visitor
    goes to the login page, an admin is refused (403: they have no orders or notifications).

    ``refuse(status, message)`` answers those two instead (a stream answers in plain text).
    Used bare (``@shopper_required``) or with arguments (``@shopper_required(refuse=...)``).
    """

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                return refuse(401, "Log in first.") if refuse else to_login()
            if user.is_admin:
                if refuse:
                    return refuse(403, SHOPPERS_ONLY)
                abort(403, SHOPPERS_ONLY)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate(view) if view is not None else decorate


def attempt(call: Callable[[], object], success: str, action: str | None = None) -> bool:
    """Make one call for a form: flash ``success``, or the service's refusal; True if it worked.

    A refusal is shown with what to do about it (:func:`storefront.problems.describe`
    for ``action``); one that still left the order recorded is a warning, not an error.
    """
    try:
        call()
    except ApiProblem as exc:
        flash(describe(exc, action), "warning" if recorded(exc) else "error")
        return False
    flash(success, "success")
    return True


def page_number() -> int:
    """The ``page`` query parameter (1 when absent or nonsense)."""
    raw = request.args.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 100_000 else 1


def past_the_end(page: Page) -> int | None:
    """The last page's number when the one asked for lies past it (``?page=999``)."""
    return page.pages if page.page > page.pages else None


def to_login(message: str | None = None) -> WerkzeugResponse:
    """Redirect to the login page, coming back to this page (a GET) afterwards."""
    if message:
        flash(message, "warning")
    target = request.script_root + request.full_path if request.method == "GET" else None
    if target and target.endswith("?"):
        target = target[:-1]
    return redirect(url_for("account.login", next=target))
