"""The single-app baseline: one Flask route doing a sale's database work in one transaction.

What distribution costs is measured against this. ``POST /sales``
``{"product_id", "quantity"}`` with a customer's bearer token:

1. verifies the RS256 JWT locally against the customers service's JWKS,
   cached (:class:`shopkit.auth.JwksKeyResolver`, exactly what sales uses);
2. in ONE transaction on its own tables (schema ``bench_monolith``):
   ``UPDATE products SET stock = stock - :q WHERE id = :p AND stock >= :q RETURNING price``,
   ``UPDATE wallets SET balance = balance - :total WHERE customer_id = :c AND balance >= :total``,
   ``INSERT INTO sales ...``, ``COMMIT``;
3. answers 201 with the sale as JSON (409 ``insufficient_stock`` / ``insufficient_funds``).

Served by gunicorn with the services' settings (``gthread``,
``WEB_CONCURRENCY`` x ``GUNICORN_THREADS``) and the same engine settings
(:class:`shopkit.db.Database`: pool, pre-ping, statement timeout).

Deliberately NOT included, because they are what the services add on top of
the database work: the three HTTP hops between services, idempotency keys,
the reservation row, the ledger entry, the saga step log, the pending →
completed second transaction, marshmallow/flask-smorest validation and
serialisation, per-request JSON access logs, request ids, Prometheus metrics
and the input guard. ``bench/README.md`` discusses what each costs.

A second variant, :func:`create_full_app`, does the same single transaction
behind the services' own stack (:func:`shopkit.app.create_service_app`: request
ids, JSON access log, input guard, Prometheus metrics, problem+json errors,
flask-smorest/marshmallow with the sales service's own ``PurchaseSchema`` and
``SaleSchema``, the request-scoped SQLAlchemy session). The difference between
the two variants is the framework's cost; between the full-stack variant and the
saga, distribution's.

:mod:`bench.run` calls :func:`setup` and serves both under gunicorn
(``bench.monolith:create_app()``, ``bench.monolith:create_full_app()``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from flask import Flask, Response, json, request
from sqlalchemy import create_engine, text

from shopkit.auth import JwksKeyResolver, TokenVerifier
from shopkit.db import Database
from shopkit.errors import ProblemError

SCHEMA = "bench_monolith"

DDL = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
CREATE TABLE {SCHEMA}.products (
    id bigint PRIMARY KEY,
    name varchar(200) NOT NULL,
    price numeric(12, 2) NOT NULL CHECK (price > 0),
    stock integer NOT NULL CHECK (stock >= 0)
);
CREATE TABLE {SCHEMA}.wallets (
    id integer PRIMARY KEY,
    customer_id bigint NOT NULL UNIQUE,
    balance numeric(12, 2) NOT NULL CHECK (balance >= 0)
);
CREATE TABLE {SCHEMA}.sales (
    id uuid PRIMARY KEY,
    customer_id bigint NOT NULL,
    product_id bigint NOT NULL,
    quantity integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(12, 2) NOT NULL,
    total numeric(12, 2) NOT NULL,
    status varchar(16) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_bench_sales_customer_created ON {SCHEMA}.sales (customer_id, created_at);
"""

TAKE_STOCK = text(
    f"UPDATE {SCHEMA}.products SET stock = stock - :q WHERE id = :p AND stock >= :q RETURNING price"
)
DEBIT = text(
    f"UPDATE {SCHEMA}.wallets SET balance = balance - :total "
    "WHERE customer_id = :c AND balance >= :total RETURNING balance"
)
INSERT_SALE = text(
    f"INSERT INTO {SCHEMA}.sales "
    "(id, customer_id, product_id, quantity, unit_price, total, status) "
    "VALUES (:id, :c, :p, :q, :price, :total, 'completed')"
)


def setup(
    database_url: str,
    products: Iterable[tuple[int, str, Decimal, int]],
    wallets: Iterable[tuple[int, Decimal]],
) -> None:
    """(Re)create ``bench_monolith`` with ``(id, name, price, stock)`` products and wallets.

    Wallets are ``(customer_id, balance)``; each also gets a dense ``id`` 1..N
    so that ``pgbench`` can pick one with ``random(1, N)``.
    """
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(DDL)
            conn.execute(
                text(f"INSERT INTO {SCHEMA}.products VALUES (:i, :n, :p, :s)"),
                [{"i": i, "n": n, "p": p, "s": s} for i, n, p, s in products],
            )
            conn.execute(
                text(f"INSERT INTO {SCHEMA}.wallets VALUES (:i, :c, :b)"),
                [{"i": i, "c": c, "b": b} for i, (c, b) in enumerate(wallets, start=1)],
            )
            conn.exec_driver_sql(f"ANALYZE {SCHEMA}.products, {SCHEMA}.wallets")
    finally:
        engine.dispose()


class _Refused(Exception):
    """Rolls the transaction back and becomes a 409."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _problem(status: int, code: str, detail: str) -> Response:
    body = {"status": status, "code": code, "detail": detail}
    return Response(json.dumps(body), status=status, mimetype="application/problem+json")


def _positive_int(body: dict[str, Any], name: str, limit: int) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
        raise ValueError(name)
    return value


def create_app() -> Flask:
    """The baseline app: ``DATABASE_URL``, ``CUSTOMERS_URL`` for the JWKS, ``ACCESS_TOKEN_TTL``."""
    customers_url = os.environ.get("CUSTOMERS_URL", "http://127.0.0.1:5000").rstrip("/")
    # Tokens living longer than the configured access TTL are refused, as in the services.
    access_ttl_s = int(os.environ.get("ACCESS_TOKEN_TTL", str(15 * 60)))
    verifier = TokenVerifier(
        JwksKeyResolver(customers_url + "/.well-known/jwks.json"),
        max_lifetime_s={"access": access_ttl_s},
    )
    database = Database(
        os.environ["DATABASE_URL"],
        application_name="bench-monolith",
        pool_size=int(os.environ.get("DB_POOL_SIZE", "5")),
    )
    app = Flask(__name__)

    @app.post("/sales")
    def buy() -> Response:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _problem(401, "unauthorized", "A bearer token is required.")
        try:
            principal = verifier.principal(token.strip())
        except ProblemError as exc:
            return _problem(exc.status, exc.code, exc.detail)
        if principal.role != "customer" or principal.customer_id is None:
            return _problem(403, "forbidden", "Only customers buy.")
        body = request.get_json(silent=True)
        try:
            if not isinstance(body, dict):
                raise ValueError("body")
            product_id = _positive_int(body, "product_id", 2**53)
            quantity = _positive_int(body, "quantity", 1000)
        except ValueError as exc:
            return _problem(422, "validation_error", f"Invalid {exc}.")
        sale_id = uuid.uuid4()
        try:
            with database.engine.begin() as conn:
                taken = conn.execute(TAKE_STOCK, {"q": quantity, "p": product_id}).first()
                if taken is None:
                    raise _Refused("insufficient_stock")
                price: Decimal = taken.price
                total = (price * quantity).quantize(Decimal("0.01"))
                debited = conn.execute(DEBIT, {"total": total, "c": principal.customer_id}).first()
                if debited is None:
                    raise _Refused("insufficient_funds")
                conn.execute(
                    INSERT_SALE,
                    {
                        "id": sale_id,
                        "c": principal.customer_id,
                        "p": product_id,
                        "q": quantity,
                        "price": price,
                        "total": total,
                    },
                )
        except _Refused as refused:
            return _problem(409, refused.code, "The sale was refused.")
        sale = {
            "id": str(sale_id),
            "product_id": product_id,
            "quantity": quantity,
            "unit_price": f"{price:.2f}",
            "total": f"{total:.2f}",
            "status": "completed",
        }
        return Response(json.dumps(sale), status=201, mimetype="application/json")

    return app


def create_full_app() -> Flask:
    """The same transaction behind the services' stack (``shopkit.app.create_service_app``).

    Reads ``DATABASE_URL`` and ``CUSTOMERS_URL`` like any service. ``/readyz``
    checks the sales schema's migrations (the app has none of its own).
    """
    from flask_smorest import Blueprint  # noqa: PLC0415 (only this variant needs them)

    from sales_service.schemas import PurchaseSchema, SaleSchema  # noqa: PLC0415
    from shopkit.app import create_service_app  # noqa: PLC0415
    from shopkit.auth import ROLE_CUSTOMER, require_principal, requires  # noqa: PLC0415
    from shopkit.db import get_session  # noqa: PLC0415
    from shopkit.errors import Conflict, ValidationFailed  # noqa: PLC0415

    blueprint = Blueprint("bench_sales", __name__, description="One-transaction purchases.")

    @blueprint.route("/sales", methods=["POST"])
    @blueprint.response(201, SaleSchema)
    @requires(ROLE_CUSTOMER)
    @blueprint.arguments(PurchaseSchema)
    def buy(data: dict[str, Any]) -> dict[str, Any]:
        """Take stock, debit the wallet and record the sale in one transaction."""
        principal = require_principal()
        session = get_session()
        if len(data["lines"]) != 1:
            raise ValidationFailed({"items": ["The baseline sells one product per sale."]})
        ((product_id, quantity),) = data["lines"]
        taken = session.execute(TAKE_STOCK, {"q": quantity, "p": product_id}).first()
        if taken is None:
            raise Conflict("insufficient_stock", "Not enough stock for this quantity.")
        total = (taken.price * quantity).quantize(Decimal("0.01"))
        debited = session.execute(DEBIT, {"total": total, "c": principal.customer_id}).first()
        if debited is None:
            raise Conflict("insufficient_funds", "The wallet balance does not cover the total.")
        sale_id = uuid.uuid4()
        session.execute(
            INSERT_SALE,
            {
                "id": sale_id,
                "c": principal.customer_id,
                "p": product_id,
                "q": quantity,
                "price": taken.price,
                "total": total,
            },
        )
        session.commit()
        return {
            "id": sale_id,
            "status": "completed",
            "product_id": product_id,
            "quantity": quantity,
            "unit_price": taken.price,
            "total": total,
            "customer_id": principal.customer_id,
            "username": principal.subject,
        }

    return create_service_app(
        service="monolith",
        import_name=__name__,
        package="sales_service",
        schema="sales",
        title="Benchmark single app (services' stack)",
        description="A purchase in one transaction, for comparison with the saga.",
        blueprints=[blueprint],
    )
