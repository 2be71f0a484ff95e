"""The Shop seeder: realistic reproducible data, simulated shoppers and a cross-service audit.

The seeder is a client program. It talks to the four services over HTTP only,
exactly as any other client would, and owns no data of its own.

Commands (``python -m seeder --help``):

``populate``
    Faker customers (with passwords the seeder can derive again from the seed,
    see :func:`seeder.data.derive_password`), topped-up wallets and a
    catalogue across the four categories, through the admin bulk endpoints.
    Re-running it with the same seed creates nothing twice and says what
    already exists.
``replay``
    Simulated shoppers log in, browse, fill carts of 1-4 products with skewed
    popularity, top up when short, check out, cancel about 5 % of their orders
    and review what they kept; an admin ships and delivers a share of the
    orders, moderates most of the reviews its own shoppers wrote (never
    anyone else's) and restocks sold-out products. Every outcome is checked
    against the order itself and its own ledger entries (lines, totals,
    history, one debit, one refund), not only the status code, and not against
    a balance another actor can move.
``audit``
    The invariants of the sale (docs/architecture.rst, "The sale: one saga,
    exactly once") across services for every order state
    (paid, cancelled, failed, in progress), read through the admin endpoints:
    exit 1 on any violation.
``demo``
    What ``make run`` and ``docker compose`` use: wait for the services,
    run ``populate`` again (it is idempotent: existing customers and products
    are skipped, so a restart creates nothing new), then replay gently until
    stopped.

Configuration comes from the environment (``CUSTOMERS_URL``, ``INVENTORY_URL``,
``SALES_URL``, ``REVIEWS_URL``, ``ADMIN_USERNAME``, ``ADMIN_PASSWORD``); every
value has a flag that overrides it.

Exit codes: ``0`` success; ``1`` audit violations, result checks that failed
or a command the services refused; ``2`` usage error; ``3`` a service is
unreachable or not ready.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE"]
