"""Property-based run over the customers service's own OpenAPI document: no input gives a 5xx.

Run twice: as the bootstrap admin, and as the sales service, since the
``/internal`` endpoints check the ``service`` role before validating the body
(an admin only ever gets 403 there).
"""

from __future__ import annotations

from flask import Flask

from tests.support.fuzz import fuzz_operations
from tests.support.identity import Identity, bearer

INTERNAL = (
    "POST /internal/wallet-debits",
    "POST /internal/wallet-debits/batch",
    "POST /internal/wallet-credits",
)


def test_no_input_causes_a_server_error(customers_app: Flask, identity: Identity) -> None:
    checked = fuzz_operations(customers_app, bearer(identity.admin_token()))
    assert "POST /internal/wallet-debits" in checked
    assert len(checked) >= 15


def test_no_input_from_a_service_causes_a_server_error(
    customers_app: Flask, identity: Identity
) -> None:
    checked = fuzz_operations(customers_app, bearer(identity.service_token()), max_examples=15)
    assert len(checked) >= 15
    for label in INTERNAL:
        # The service passed the role check, so the generated bodies reached validation.
        assert set(checked[label]) - {401, 403}, (label, checked[label])
