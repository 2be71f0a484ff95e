"""Typed HTTP clients for the services reviews calls: inventory (products) and sales (purchases).

* :class:`CatalogClient` asks inventory whether a product exists:
  ``GET /products/{id}`` (anonymous) answers 200 or 404 ``not_found``.
* :class:`PurchasesClient` asks sales whether a customer has a paid order
  (completed, shipped or delivered) of a product:
  ``GET /internal/purchases?customer_id=&product_id=`` with a
  ``service`` token obtained from the customers service.

Both speak through :class:`shopkit.service_client.ServiceClient` (timeouts,
bounded retries, request-id propagation). Whatever goes wrong on the other
side (unreachable, timing out, an unexpected status such as 500 or 403, an
answer that does not follow the contract, or the customers service refusing
our service credentials) becomes :class:`DependencyUnavailable`: a 503
``dependency_unavailable`` problem, never a 500 of ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shopkit.config import Settings
from shopkit.service_client import DependencyUnavailable, ServiceClient, ServiceTokenProvider

#: The client id reviews presents to ``POST /auth/service-token``.
CLIENT_ID = "reviews"


class Catalog(Protocol):
    """What reviews needs to know about products."""

    def product_exists(self, product_id: int) -> bool:
        """True if inventory knows the product (archived products still exist)."""


class Purchases(Protocol):
    """What reviews needs to know about sales."""

    def has_purchased(self, customer_id: int, product_id: int) -> bool:
        """True if the customer has at least one paid order of the product."""


@dataclass(frozen=True)
class ReviewsClients:
    """The dependencies of the reviews service (real clients, or fakes in tests)."""

    catalog: Catalog
    purchases: Purchases


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


class PurchasesClient:
    """Sales' ``GET /internal/purchases`` (service token)."""

    def __init__(self, http: ServiceClient) -> None:
        self.http = http

    def has_purchased(self, customer_id: int, product_id: int) -> bool:
        """Sales' ``purchased`` answer; anything unexpected is :class:`DependencyUnavailable`."""
        response = self.http.get(
            "/internal/purchases",
            params={"customer_id": customer_id, "product_id": product_id},
        )
        purchased = response.body.get("purchased")
        if response.status == 200 and isinstance(purchased, bool):
            return purchased
        raise DependencyUnavailable(
            self.http.name,
            f"The {self.http.name} service gave an unexpected answer ({response.status}).",
        )


def build_clients(settings: Settings) -> ReviewsClients:
    """The real clients, configured from ``settings`` (URLs, timeouts, retries, secret)."""
    tokens = ServiceTokenProvider(
        settings.customers_url,
        CLIENT_ID,
        settings.client_secret(CLIENT_ID),
        timeout_s=settings.http_read_timeout_s,
    )

    def client(name: str, url: str, tokens: ServiceTokenProvider | None) -> ServiceClient:
        return ServiceClient(
            name,
            url,
            tokens=tokens,
            connect_timeout_s=settings.http_connect_timeout_s,
            read_timeout_s=settings.http_read_timeout_s,
            retries=settings.http_retries,
        )

    return ReviewsClients(
        catalog=CatalogClient(client("inventory", settings.inventory_url, None)),
        purchases=PurchasesClient(client("sales", settings.sales_url, tokens)),
    )
