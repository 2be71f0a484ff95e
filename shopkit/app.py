"""The common app factory every service builds on.

:func:`create_service_app` wires everything a Shop service has in common:
settings, JSON logs with request and trace ids, tracing (when ``OTEL_*`` asks
for it), the database, problem+json errors,
health, metrics, OpenAPI with an offline Swagger UI, token verification and
the ``db`` CLI. The service then registers its own blueprints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import swagger_ui_bundle
from flask import Flask, redirect, send_from_directory
from flask.typing import ResponseReturnValue
from flask_smorest import Api, Blueprint
from marshmallow import Schema, fields

from shopkit import openapi
from shopkit.auth import (
    DeactivatedAccounts,
    JwksKeyResolver,
    KeyResolver,
    TokenVerifier,
    init_auth,
)
from shopkit.config import Settings
from shopkit.db import Database, init_db, resolve_database_url
from shopkit.deadline import init_deadline
from shopkit.errors import register_error_handlers
from shopkit.fault_routes import faults_blp, init_faults
from shopkit.fields import Money
from shopkit.health import init_health
from shopkit.input_guard import init_input_guard
from shopkit.json_provider import ShopJSONProvider
from shopkit.logs import configure_logging, init_access_log
from shopkit.metrics import BusinessMetric, init_metrics
from shopkit.migrations import db_cli
from shopkit.proxy import trusted_networks
from shopkit.request_id import init_request_id
from shopkit.security_headers import init_security_headers
from shopkit.telemetry import init_tracing, instrument_app

SWAGGER_STATIC = "/docs/static/"
MAX_BODY_BYTES = 4 * 1024 * 1024


class ProblemSchema(Schema):
    """RFC 9457 problem details, the body of every error response."""

    type = fields.String(metadata={"example": "https://shop.example/problems/not_found"})
    title = fields.String(metadata={"example": "Not Found"})
    status = fields.Integer(metadata={"example": 404})
    detail = fields.String()
    code = fields.String(metadata={"description": "Machine-readable error code."})
    instance = fields.String()
    request_id = fields.String()
    errors = fields.Dict(metadata={"description": "Per-field messages (validation errors)."})


class ShopApi(Api):
    """flask-smorest ``Api`` whose documented error body is a problem document.

    Error handlers are registered by :func:`shopkit.errors.register_error_handlers`,
    not by flask-smorest, so every error has one shape.
    """

    ERROR_SCHEMA = ProblemSchema

    def _register_error_handlers(self) -> None:
        pass


def create_service_app(
    *,
    service: str,
    import_name: str,
    package: str,
    schema: str,
    title: str,
    description: str,
    blueprints: Iterable[Blueprint],
    config: dict[str, Any] | None = None,
    key_resolver: KeyResolver | None = None,
    bootstrap: Callable[[Flask], None] | None = None,
    metrics: Iterable[BusinessMetric] = (),
) -> Flask:
    """Build the Flask app of ``service``.

    ``config`` may hold Flask settings and a ``SETTINGS`` object (a
    :class:`~shopkit.config.Settings`) to use instead of the environment;
    tests pass the database URL that way. ``key_resolver`` (or a
    ``KEY_RESOLVER`` config entry) verifies tokens (default: the customers
    service's JWKS). A ``DEACTIVATED_ACCOUNTS`` config entry (anything with
    ``contains(customer_id)``) replaces the list of deactivated accounts read
    from the customers service (the customers service itself checks its
    database instead). ``bootstrap`` runs after
    ``db upgrade`` and at start when the schema is current. ``metrics`` are the
    service's own business metrics (its ``metrics.py``).
    """
    config = dict(config or {})
    settings: Settings = config.pop("SETTINGS", None) or Settings.from_env(service)
    key_resolver = config.pop("KEY_RESOLVER", None) or key_resolver
    deactivated = config.pop("DEACTIVATED_ACCOUNTS", None)
    configure_logging(service, settings.log_level, access_log=settings.access_log)
    init_tracing(service)  # once per process, only if OTEL_* variables ask for it

    app = Flask(import_name)
    app.json = ShopJSONProvider(app)
    app.config.update(
        API_TITLE=title,
        API_VERSION="1.0.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL=SWAGGER_STATIC,
        API_SPEC_OPTIONS={
            "info": {"description": description},
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
                }
            },
        },
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        SHOP_SETTINGS=settings,
    )
    app.config.update(config)

    database = Database(
        resolve_database_url(settings),
        application_name=service,
        pool_size=settings.db_pool_size,
        statement_timeout_ms=settings.db_statement_timeout_ms,
    )
    instrument_app(app)  # first, so its span covers the other request hooks
    init_request_id(app)
    init_deadline(app, settings.request_deadline_s, trusted_networks(settings.trusted_proxies))
    init_access_log(app)
    init_input_guard(app)
    init_security_headers(app)
    init_db(app, database)
    if deactivated is None and service != "customers":
        deactivated = _deactivated_accounts(service, settings)
    init_auth(
        app,
        TokenVerifier(
            key_resolver
            or JwksKeyResolver(
                settings.customers_url + "/.well-known/jwks.json", ttl_s=settings.jwks_cache_ttl_s
            ),
            max_lifetime_s={
                "access": settings.access_token_ttl_s,
                "refresh": settings.refresh_token_ttl_s,
            },
            deactivated=deactivated,
        ),
    )

    api = ShopApi(app)
    api.register_field(Money, "string", None)
    for blueprint in (*blueprints, faults_blp):
        api.register_blueprint(blueprint)
    openapi.install(api, app)
    app.extensions["shop_api"] = api

    _serve_swagger_assets(app)
    register_error_handlers(app)
    init_faults(app, service)
    init_health(app, service=service, package=package, schema=schema)
    init_metrics(app, service, metrics)
    app.cli.add_command(db_cli(package))
    if bootstrap is not None:
        app.extensions["shop_bootstrap"] = lambda: bootstrap(app)
    return app


def _deactivated_accounts(service: str, settings: Settings) -> DeactivatedAccounts:
    """The list of deactivated accounts, read from customers with this service's own token."""
    from shopkit.service_client import ServiceClient, ServiceTokenProvider  # noqa: PLC0415

    tokens = ServiceTokenProvider(
        settings.customers_url, service, settings.client_secret(service), timeout_s=2.0
    )
    client = ServiceClient(
        "customers",
        settings.customers_url,
        tokens=tokens,
        connect_timeout_s=1.0,
        read_timeout_s=2.0,
        retries=0,
        deadline_s=2.0,
        pool_size=2,
    )
    return DeactivatedAccounts(client, refresh_s=settings.deactivation_refresh_s)


def _serve_swagger_assets(app: Flask) -> None:
    """Serve the Swagger UI files from the installed wheel, so ``/docs`` works offline.

    ``/docs/`` (with the slash) leads to ``/docs`` too.
    """

    @app.get("/docs/")
    def docs_slash() -> ResponseReturnValue:
        """Swagger UI lives at ``/docs``."""
        return redirect("/docs", 308)

    @app.get(SWAGGER_STATIC + "<path:filename>")
    def swagger_static(filename: str) -> ResponseReturnValue:
        """A Swagger UI asset."""
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename, max_age=86400)
