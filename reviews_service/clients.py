"""The typed HTTP client of the one service reviews calls: inventory (does a product exist).

* :class:`CatalogClient` asks inventory whether a product exists:
  ``GET /products/{id}`` (anonymous) answers 200 or 404 ``not_found``.

Whether a customer bought a product is not asked of sales: reviews learns it
from order events (:mod:`reviews_service.purchases`).

The client speaks through :class:`shopkit.service_client.ServiceClient` (timeouts,
bounded retries, request-id propagation). Whatever goes wrong on the other
side (unreachable, timing out, an unexpected status such as 500 or 403, or an
answer that does not follow the contract) becomes :class:`DependencyUnavailable`:
a 503 ``dependency_unavailable`` problem, never a 500 of ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shopkit.config import Settings
from shopkit.service_client import DependencyUnavailable, ServiceClient


class Catalog(Protocol):
    """What reviews needs to know about products."""

    def product_exists(self, product_id: int) -> bool:
        """True if inventory knows the product (archived products still exist)."""


@dataclass(frozen=True)
class ReviewsClients:
    """The dependencies of the reviews service (the real client, or a fake in tests)."""

    catalog: Catalog


class CatalogClient:
    """Inventory's ``GET /products/{id}``."""

    def __init__(self, http: ServiceClient) -> None:
        self.http = http

    def product_exists(self, product_id: int) -> bool:
        """True on 200, False on 404; anything else is :class:`DependencyUnavailable`."""
        response = self.http.get(f"/products/{product_id}", auth=False)
        if response.status == 200 and response.body.get("id") == product_id:
            return True
        if response.status == 404:
            return False
        raise DependencyUnavailable(
            self.http.name,
            f"The {self.http.name} service gave an unexpected answer ({response.status}).",
        )


def build_clients(settings: Settings) -> ReviewsClients:
    """The real client, configured from ``settings`` (URL, timeouts, retries)."""
    inventory = ServiceClient(
        "inventory",
        settings.inventory_url,
        connect_timeout_s=settings.http_connect_timeout_s,
        read_timeout_s=settings.http_read_timeout_s,
        retries=settings.http_retries,
    )
    return ReviewsClients(catalog=CatalogClient(inventory))
