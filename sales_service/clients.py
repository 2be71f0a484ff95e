"""Typed HTTP clients for the services an order talks to (inventory and customers).

Every state-changing call carries the deterministic idempotency key of its
saga step (``{sale_id}:reserve``, ``{sale_id}:debit``, ``{sale_id}:release``,
and for a cancellation ``{sale_id}:refund`` and ``{sale_id}:return``; a second
cancellation after a refused refund asks under ``{sale_id}:refund-2``...), so
repeating a step after a timeout or a crash can never act twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shopkit.breaker import OPEN
from shopkit.config import Settings
from shopkit.fields import format_money
from shopkit.service_client import (
    DependencyUnavailable,
    ServiceClient,
    ServiceResponse,
    ServiceTokenProvider,
)

#: Each call's whole budget, retries included: two calls (reserve, debit) plus a
#: release (or a refund and a return) fit in the 10 seconds within which a purchase
#: or a cancellation must answer.
CALL_DEADLINE_S = 3.0


def step_key(sale_id: uuid.UUID, step: str) -> str:
    """The idempotency key of one saga step."""
    return f"{sale_id}:{step}"


class InventoryClient:
    """Products and stock reservations in the inventory service."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    def reserve(self, sale_id: uuid.UUID, lines: Sequence[tuple[int, int]]) -> ServiceResponse:
        """Take every ``(product_id, quantity)`` line for the order, all or none (201, 404, 409)."""
        return self.client.post(
            "/internal/reservations",
            json=_reservation(sale_id, lines),
            idempotency_key=step_key(sale_id, "reserve"),
        )

    def reserve_batch(
        self, reservations: Sequence[tuple[uuid.UUID, Sequence[tuple[int, int]]]]
    ) -> ServiceResponse:
        """Reserve for several sales in one call (200 with one answer per sale, in order).

        Each sale is sent with the body and key of its own :meth:`reserve`, so its
        answer is stored (and replayed, by a batch or alone) exactly as if it had
        been reserved alone.
        """
        return self.client.post(
            "/internal/reservations/batch",
            json={
                "items": [
                    {
                        "idempotency_key": step_key(sale_id, "reserve"),
                        "request": _reservation(sale_id, lines),
                    }
                    for sale_id, lines in reservations
                ]
            },
        )

    def release(self, sale_id: uuid.UUID) -> ServiceResponse:
        """Put an unpaid order's reserved stock back (200; repeating it changes nothing)."""
        return self.client.post(
            f"/internal/reservations/{sale_id}/release",
            json={},
            idempotency_key=step_key(sale_id, "release"),
        )

    def return_stock(self, sale_id: uuid.UUID) -> ServiceResponse:
        """Give a cancelled order's stock back, once its money went back (200)."""
        return self.client.post(
            f"/internal/reservations/{sale_id}/return",
            json={},
            idempotency_key=step_key(sale_id, "return"),
        )

    def products(self, params: dict[str, Any]) -> ServiceResponse:
        """A page of the public product list."""
        return self.client.get("/products", params=params, auth=False)

    def products_by_id(self, product_ids: Sequence[int]) -> ServiceResponse:
        """The listable products among ``product_ids`` (at most 100), in one call."""
        params = {"ids": ",".join(str(i) for i in product_ids), "page_size": 100}
        return self.client.get("/products", params=params, auth=False)

    def product(self, product_id: int) -> ServiceResponse:
        """One product's public details (200 or 404)."""
        return self.client.get(f"/products/{product_id}", auth=False)


def _reservation(sale_id: uuid.UUID, lines: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """The body reserving ``lines`` for a sale.

    A one-line order is sent in the original one-line shape, which every
    inventory version understands (a rolling upgrade can run either first).
    """
    body: dict[str, Any] = {"sale_id": str(sale_id)}
    if len(lines) == 1:
        body["product_id"], body["quantity"] = lines[0]
    else:
        body["items"] = [{"product_id": p, "quantity": q} for p, q in lines]
    return body


def _sale_money(sale_id: uuid.UUID, customer_id: int, amount: Decimal) -> dict[str, Any]:
    return {"customer_id": customer_id, "amount": format_money(amount), "sale_id": str(sale_id)}


class CustomersClient:
    """Wallet debits and refunds in the customers service."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    def debit(self, sale_id: uuid.UUID, customer_id: int, amount: Decimal) -> ServiceResponse:
        """Take the sale's total from the wallet (201, or 409 ``insufficient_funds``)."""
        return self.client.post(
            "/internal/wallet-debits",
            json=_sale_money(sale_id, customer_id, amount),
            idempotency_key=step_key(sale_id, "debit"),
        )

    def debit_batch(self, debits: Sequence[tuple[uuid.UUID, int, Decimal]]) -> ServiceResponse:
        """Debit several sales in one call (200 with one answer per sale, in order), each
        under the body and key of its own :meth:`debit`."""
        return self.client.post(
            "/internal/wallet-debits/batch",
            json={
                "items": [
                    {
                        "idempotency_key": step_key(sale_id, "debit"),
                        "request": _sale_money(sale_id, customer_id, amount),
                    }
                    for sale_id, customer_id, amount in debits
                ]
            },
        )

    def refund(
        self, sale_id: uuid.UUID, customer_id: int, amount: Decimal, attempt: int = 1
    ) -> ServiceResponse:
        """Give a cancelled order's total back to the wallet, once (201).

        ``attempt`` numbers the order's cancellations: a refund the wallet refused
        (its answer is stored under its key) is asked again under a new key when the
        order is cancelled again. The ledger takes one refund per sale whatever the key.
        """
        step = "refund" if attempt <= 1 else f"refund-{attempt}"
        return self.client.post(
            "/internal/wallet-credits",
            json=_sale_money(sale_id, customer_id, amount),
            idempotency_key=step_key(sale_id, step),
        )


@dataclass
class SaleClients:
    """The two dependencies of a sale."""

    inventory: InventoryClient
    customers: CustomersClient

    def check_available(self) -> None:
        """Raise 503 ``dependency_unavailable`` (nothing recorded) while a circuit is open.

        Checked before an order is recorded: recording it would only tie up its stock
        in a reservation until recovery could settle it.
        """
        for client in (self.inventory.client, self.customers.client):
            if client.guard.breaker.state == OPEN:
                raise DependencyUnavailable(
                    client.name,
                    f"The {client.name} service is down; this request changed nothing.",
                )


def build_clients(settings: Settings) -> SaleClients:
    """Clients with service-token authentication, timeouts and bounded retries from ``settings``."""
    tokens = ServiceTokenProvider(
        settings.customers_url, "sales", settings.client_secret("sales"), timeout_s=3.0
    )
    common: dict[str, Any] = {
        "tokens": tokens,
        "connect_timeout_s": settings.http_connect_timeout_s,
        "read_timeout_s": min(settings.http_read_timeout_s, CALL_DEADLINE_S),
        "retries": settings.http_retries,
        "deadline_s": CALL_DEADLINE_S,
    }
    return SaleClients(
        inventory=InventoryClient(ServiceClient("inventory", settings.inventory_url, **common)),
        customers=CustomersClient(ServiceClient("customers", settings.customers_url, **common)),
    )
