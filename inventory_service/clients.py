"""The one service inventory calls: customers, to learn whether a sale was paid or refunded.

Only the rare paths ask (releasing or returning a reservation), never a
reservation. The call uses inventory's own service token (client id
``inventory``) and the usual timeouts, retries and deadline of
:class:`~shopkit.service_client.ServiceClient`; when customers cannot be
reached it raises 503 ``dependency_unavailable``, which is not stored under
the caller's idempotency key, so the caller retries.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from shopkit.config import Settings
from shopkit.service_client import (
    DependencyUnavailable,
    ServiceClient,
    ServiceResponse,
    ServiceTokenProvider,
)

#: The client id inventory authenticates with to the customers service.
CLIENT_ID = "inventory"
#: The whole budget of one call, retries included.
CALL_DEADLINE_S = 3.0


class SalePayments(NamedTuple):
    """A sale's money in the wallet ledger: what was debited and refunded (``None``: nothing)."""

    debited: Decimal | None
    refunded: Decimal | None


class Transport(Protocol):
    """What :class:`PaymentsClient` needs of a :class:`ServiceClient` (tests pass a fake)."""

    def get(self, path: str, **kwargs: Any) -> ServiceResponse:
        """``GET`` ``path`` with a service token."""
        ...


class PaymentsClient:
    """Reads a sale's debit and refund from the customers service."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def sale_payments(self, sale_id: uuid.UUID) -> SalePayments:
        """``GET /internal/sale-payments/{sale_id}``; 503 if customers cannot answer it."""
        response = self.transport.get(f"/internal/sale-payments/{sale_id}")
        if response.status != 200:
            raise DependencyUnavailable(
                "customers",
                f"The customers service answered {response.status} about the sale's payments.",
            )
        try:
            return SalePayments(
                _amount(response.body.get("debited")), _amount(response.body.get("refunded"))
            )
        except (ArithmeticError, TypeError):
            raise DependencyUnavailable(
                "customers", "The customers service gave an unexpected answer."
            ) from None


def _amount(value: Any) -> Decimal | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(value)
    return Decimal(value)


def build_payments_client(settings: Settings) -> PaymentsClient:
    """The payments client with inventory's service token, from ``settings``."""
    tokens = ServiceTokenProvider(
        settings.customers_url,
        CLIENT_ID,
        settings.client_secret(CLIENT_ID),
        timeout_s=CALL_DEADLINE_S,
    )
    return PaymentsClient(
        ServiceClient(
            "customers",
            settings.customers_url,
            tokens=tokens,
            connect_timeout_s=settings.http_connect_timeout_s,
            read_timeout_s=min(settings.http_read_timeout_s, CALL_DEADLINE_S),
            retries=settings.http_retries,
            deadline_s=CALL_DEADLINE_S,
            pool_size=4,
        )
    )
