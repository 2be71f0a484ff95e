"""The storefront: a shop and an operations console in the browser (port 8080).

A backend-for-frontend: server-rendered Jinja2 pages over the public HTTP
APIs of every service in :mod:`shopkit.registry`. It holds no shop data and
never touches a database. The user's tokens stay in the encrypted, HttpOnly,
SameSite session cookie; every form carries a CSRF token (Flask-WTF). htmx
(vendored under ``static/``) and a few lines of its own script (the live order
pages, :mod:`storefront.live`) only enhance pages that work without JavaScript.

``gunicorn 'storefront:create_app()'`` serves it, with one worker (the data
page's seeder runs belong to the process; threads give the concurrency).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, jsonify, render_template
from flask import session as flask_session  # storefront.session is the package's module
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import Forbidden, HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from shopkit.config import DEV_STOREFRONT_SECRET_KEY, Settings
from shopkit.deadline import init_deadline
from shopkit.errors import ProblemError
from shopkit.input_guard import init_input_guard
from shopkit.logs import configure_logging, init_access_log
from shopkit.metrics import init_metrics
from shopkit.request_id import current_request_id, init_request_id
from shopkit.security_headers import init_security_headers
from shopkit.service_client import DependencyUnavailable
from shopkit.telemetry import init_tracing, instrument_app
from storefront import account, admin, inbox, live, shop
from storefront.clients import SERVICES, ApiProblem, HttpTransport, ShopApi
from storefront.cookie import init_cookie_sessions
from storefront.jobs import JobRunner
from storefront.livehub import LiveHub
from storefront.money import LEDGER_KINDS, Money
from storefront.problems import describe, is_unavailable
from storefront.session import LoginRequired, current_user, forget, to_login
from storefront.system import RateTracker

log = logging.getLogger(__name__)

SERVICE = "storefront"
#: Development fallback of ``STOREFRONT_SECRET_KEY`` (warned about, and refused with
#: ``SHOP_ENV=production``, by :meth:`shopkit.config.Settings.check_secrets`).
DEV_SECRET_KEY = DEV_STOREFRONT_SECRET_KEY
SESSION_DAYS = 7
#: The CSP of every page: its own scripts (the vendored htmx), styles and images only,
#: forms posted only to itself, never framed. No page has inline script or style.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PERMANENT_SESSION = timedelta(days=SESSION_DAYS)


def _secure_cookies(settings: Settings) -> bool:
    """``Secure`` cookies: ``STOREFRONT_SECURE_COOKIES`` (1 or 0) when set, else in
    production mode (``SHOP_ENV=production``) only."""
    configured = os.environ.get("STOREFRONT_SECURE_COOKIES", "").strip()
    if configured:
        return configured == "1"
    return settings.is_production


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the storefront app.

    ``config`` may hold Flask settings, a ``SETTINGS`` object
    (:class:`~shopkit.config.Settings`: the service URLs, the admin
    credentials the data page's seeder uses, timeouts) and a ``TRANSPORT``
    (a :class:`~storefront.clients.Transport`; tests give a fake).
    """
    config = dict(config or {})
    settings: Settings = config.pop("SETTINGS", None) or Settings.from_env(SERVICE)
    transport = config.pop("TRANSPORT", None) or HttpTransport(
        {name: getattr(settings, f"{name}_url") for name in SERVICES},
        connect_timeout_s=settings.http_connect_timeout_s,
        read_timeout_s=settings.http_read_timeout_s,
        retries=settings.http_retries,
    )
    configure_logging(SERVICE, settings.log_level)
    init_tracing(SERVICE)  # once per process, only if OTEL_* variables ask for it

    app = Flask(__name__)
    # The gateway serves the storefront under /shop/ and says so in X-Forwarded-Prefix
    # (deploy/gateway): it becomes SCRIPT_NAME, so url_for puts it in every link, form
    # action, redirect, static and htmx URL. Only the prefix is taken, from anyone: a
    # client who sends its own changes only the links of the page it gets itself (no
    # shared cache sits in front, a browser sends no such header cross-site without a
    # CORS preflight that nothing grants, and the session cookie's path does not follow
    # it). The gateway replaces any client's value with its own.
    app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
        app.wsgi_app, x_for=0, x_proto=0, x_host=0, x_port=0, x_prefix=1
    )
    app.config.update(
        SECRET_KEY=settings.storefront_secret_key,
        SESSION_COOKIE_NAME="shop_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=_secure_cookies(settings),
        PERMANENT_SESSION_LIFETIME=PERMANENT_SESSION,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        SHOP_SETTINGS=settings,
    )
    app.config.update(config)

    app.extensions["shop_client"] = ShopApi(transport)
    app.extensions["shop_jobs"] = JobRunner(settings)
    app.extensions["shop_rates"] = RateTracker()
    init_cookie_sessions(app, keep_s=PERMANENT_SESSION.total_seconds())
    if settings.events_url:
        revoked = app.extensions["shop_revoked_sessions"]
        hub = LiveHub(settings.events_url, revoked=revoked.__contains__)
        revoked.listeners.append(hub.end_session)  # a logout ends its live streams at once
        app.extensions["shop_live"] = hub
    CSRFProtect(app)
    # The same pieces as every service's (shopkit.app), tracing first so its span covers
    # the other hooks; no database, and forms rather than JSON bodies.
    instrument_app(app)
    init_request_id(app)
    init_deadline(app, settings.request_deadline_s)
    init_access_log(app)
    init_input_guard(app, forms=True)
    init_security_headers(app, policy=lambda _page: PAGE_POLICY)
    init_metrics(app, SERVICE)
    for blueprint in (shop.bp, account.bp, admin.bp, inbox.bp, live.bp):
        app.register_blueprint(blueprint)
    _init_health(app)
    _init_templates(app)
    _init_errors(app)
    return app


def _init_health(app: Flask) -> None:
    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        """Liveness: the process answers."""
        return jsonify(status="ok", service=SERVICE)

    @app.get("/readyz")
    def readyz() -> ResponseReturnValue:
        """Ready when the customers service (log in, accounts) answers its ``/readyz``.

        The other services are reported too; one of them down leaves the
        storefront up, showing a clear message on the pages that need it.
        """
        client: ShopApi = app.extensions["shop_client"]
        found: dict[str, str] = {}
        for name in SERVICES:
            try:
                status, _ = client.readiness(name)
            except DependencyUnavailable:
                status = 0
            found[name] = "ready" if status == 200 else "unavailable"
        ready = found["customers"] == "ready"
        body = {"status": "ready" if ready else "not_ready", "service": SERVICE, "services": found}
        return jsonify(body), 200 if ready else 503


def _init_templates(app: Flask) -> None:
    money = Money.from_env()
    app.extensions["shop_money"] = money
    app.add_template_filter(money.format, "money")

    @app.template_filter("ledger_kind")
    def ledger_kind(kind: Any) -> str:
        """A ledger entry's kind in the shopper's words (``charge`` is a top-up)."""
        return LEDGER_KINDS.get(str(kind), str(kind).replace("_", " "))

    @app.template_filter("when")
    def when(value: Any) -> str:
        """An ISO timestamp as ``2025-01-31 14:05:09``."""
        if not value:
            return ""
        try:
            return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            return str(value)

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {
            "user": current_user(),
            "request_id": current_request_id(),
            "cart_count": flask_session.get(shop.CART_COUNT),
            "inbox_unread": inbox.known_unread(),
        }


def _init_errors(app: Flask) -> None:
    """Every failure is a page that says what happened: never a stack trace."""

    def page(status: int, title: str, message: str) -> ResponseReturnValue:
        return render_template("error.html", status=status, title=title, message=message), status

    @app.errorhandler(LoginRequired)
    def _login(_error: LoginRequired) -> ResponseReturnValue:
        return to_login("Your session has ended; please log in again.")

    @app.errorhandler(DependencyUnavailable)
    def _unavailable(error: DependencyUnavailable) -> ResponseReturnValue:
        return page(503, "A service is unavailable", error.detail)

    @app.errorhandler(ProblemError)
    def _refused(error: ProblemError) -> ResponseReturnValue:
        """A request refused before any view (the input guard, the deadline)."""
        return page(error.status, "That did not work", error.detail)

    @app.errorhandler(ApiProblem)
    def _problem(error: ApiProblem) -> ResponseReturnValue:
        if error.status == 401:
            forget()
            return to_login("Your session has ended; please log in again.")
        if error.status == 404:
            return page(404, "Not found", error.detail)
        if error.status == 403:
            return page(403, "Not allowed", error.detail)
        if is_unavailable(error):
            return page(503, "A service is unavailable", describe(error))
        if error.status >= 500:
            log.error("%s answered %s: %s", error.service, error.status, error.detail)
            return page(502, "Something went wrong", f"The {error.service} service failed.")
        return page(error.status, "That did not work", error.message())

    @app.errorhandler(CSRFError)
    def _csrf(_error: CSRFError) -> ResponseReturnValue:
        return page(400, "The form expired", "Reload the page and try again.")

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> ResponseReturnValue:
        status = error.code or 500
        if status == 403:
            # abort(403, why) says why; a bare abort(403) is an admin page's refusal.
            said = error.description if error.description != Forbidden.description else None
            return page(403, "Not allowed", said or "This page is for administrators only.")
        return page(status, error.name, error.description or "")

    @app.errorhandler(Exception)
    def _unexpected(_error: Exception) -> ResponseReturnValue:
        log.exception("unhandled error")
        return page(500, "Something went wrong", "An unexpected error occurred.")
