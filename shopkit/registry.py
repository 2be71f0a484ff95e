"""The one list of Shop's apps: each service and front end, its package, port, schema and role.

Everything that needs to know which apps exist reads this list: the runtime
(default service URLs, per-service secrets), the dev stack's launcher
(:mod:`devstack`), the Compose and Kubernetes tests, the benchmarks and the
docs (the table in :doc:`/architecture`). It names packages but imports none
of them, so :mod:`shopkit` stays independent of the services. Adding a service
is one entry here plus its package.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class App:
    """One deployable app: a service (owns a schema) or a front end (owns no data)."""

    name: str
    package: str
    port: int
    #: What it owns, in a few words (the table in the docs).
    owns: str
    #: The services whose HTTP APIs this app calls (Compose's ``depends_on``, the
    #: Kubernetes network policies, the launcher's start order).
    calls: tuple[str, ...] = ()
    #: The PostgreSQL schema it owns; empty for a front end.
    schema: str = ""
    #: gunicorn workers and threads, and each process's database pool (``DB_POOL_SIZE``),
    #: as ``make run``, Compose and Kubernetes run it (a front end runs one worker: the
    #: storefront's console runs the seeder live in its process). Sales batches
    #: purchases: one worker with many threads gathers larger batches for less CPU per
    #: sale (bench/README.md, "Batching on vs off").
    workers: int = 2
    threads: int = 4
    db_pool: int = 5
    #: The path that answers 200 once the app can serve.
    ready_path: str = "/readyz"

    @property
    def has_database(self) -> bool:
        """Whether the app owns a schema (and so has migrations and a database role)."""
        return bool(self.schema)

    @property
    def role(self) -> str:
        """The database login role owning :attr:`schema` (``customers_svc`` ...); empty if none."""
        return f"{self.name}_svc" if self.has_database else ""

    def layout_env(self) -> dict[str, str]:
        """The layout as the variables gunicorn and the settings read (no pool without data)."""
        env = {"WEB_CONCURRENCY": str(self.workers), "GUNICORN_THREADS": str(self.threads)}
        if self.has_database:
            env["DB_POOL_SIZE"] = str(self.db_pool)
        return env

    @property
    def app_spec(self) -> str:
        """The WSGI app gunicorn serves, ``<package>:create_app()``."""
        return f"{self.package}:create_app()"


#: The services, in start order (each after the services it calls).
SERVICES: tuple[App, ...] = (
    App(
        "customers",
        "customers_service",
        5000,
        "accounts, passwords, roles, wallets and their ledger, refresh tokens, signing keys, "
        "throttling",
        schema="customers",
    ),
    App(
        "inventory",
        "inventory_service",
        5001,
        "products, stock, reservations and their lines",
        ("customers",),
        schema="inventory",
    ),
    App(
        "sales",
        "sales_service",
        5002,
        "orders with their lines, history and saga steps; carts",
        ("customers", "inventory"),
        schema="sales",
        workers=1,
        threads=32,
        db_pool=16,
    ),
    App(
        "reviews",
        "reviews_service",
        5003,
        "reviews and their moderation history; the verified purchases order events told",
        # Inventory: does a product exist. Purchases arrive by events, not from sales.
        ("customers", "inventory"),
        schema="reviews",
    ),
    App(
        "notifications",
        "notifications_service",
        5004,
        "each customer's notifications and their mails, made from order and wallet events",
        # Only to check tokens, like every service: the signing keys and the deactivated
        # accounts (with its own service token). Its data arrives by events.
        ("customers",),
        schema="notifications",
    ),
)
#: The web front ends: no database, started once every service is ready.
FRONTENDS: tuple[App, ...] = (
    App(
        "storefront",
        "storefront",
        8080,
        "nothing: server-rendered pages over the public APIs",
        tuple(s.name for s in SERVICES),
        workers=1,
        threads=8,
    ),
)
APPS: tuple[App, ...] = SERVICES + FRONTENDS
BY_NAME: dict[str, App] = {app.name: app for app in APPS}
#: The services' names, in start order.
SERVICE_NAMES: tuple[str, ...] = tuple(s.name for s in SERVICES)


def app(name: str) -> App:
    """The app called ``name`` (``KeyError`` if there is none)."""
    return BY_NAME[name]


def packages(apps: tuple[App, ...] = SERVICES) -> dict[str, str]:
    """Name → package of ``apps`` (the services unless told), in order."""
    return {a.name: a.package for a in apps}
