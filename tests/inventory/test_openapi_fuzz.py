"""Property-based run over the inventory service's OpenAPI document: no input gives a 5xx.

Each documented operation gets generated requests (schemathesis + hypothesis),
sent in-process as an admin, or as the sales service for ``/internal`` paths.
(schemathesis' lazy ``from_fixture`` loader does not work with pytest 9, so the
operations are listed here and a test checks the list matches the document.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from flask import Flask

from shopkit.openapi import COMMON_OPERATIONS
from tests.support.fuzz import fuzz_operation
from tests.support.identity import Identity, bearer

OPERATIONS = [
    ("GET", "/products"),
    ("POST", "/products"),
    ("POST", "/products/batch"),
    ("GET", "/products/{product_id}"),
    ("PATCH", "/products/{product_id}"),
    ("DELETE", "/products/{product_id}"),
    ("POST", "/products/{product_id}/restock"),
    ("POST", "/products/{product_id}/deduct"),
    ("PUT", "/products/{product_id}/image"),
    ("GET", "/products/{product_id}/image"),
    ("POST", "/internal/reservations"),
    ("POST", "/internal/reservations/batch"),
    ("GET", "/internal/reservations"),
    ("GET", "/internal/reservations/{sale_id}"),
    ("POST", "/internal/reservations/{sale_id}/release"),
    ("POST", "/internal/reservations/{sale_id}/return"),
]
#: The live fault switches (shopkit.faults) are documented but not fuzzed: a generated
#: body would switch real faults (a hang, a crash) on in this test process. Their
#: validation is tested in tests/shopkit/test_faults_and_bounds.py.
#: Health, metrics, the docs routes and the events admin (shopkit.events.admin_routes) every
#: service serves are fuzzed against the real processes by tests/contract/test_schemathesis.py.
EVENTS_ADMIN = {
    ("GET", "/admin/events"),
    ("GET", "/admin/events/outbox"),
    ("GET", "/admin/events/inbox"),
    ("GET", "/admin/events/dead-letters"),
    ("POST", "/admin/events/dead-letters/{dead_id}/replay"),
    ("POST", "/admin/events/dead-letters/{dead_id}/discard"),
}
NOT_FUZZED = (
    {("GET", "/admin/faults"), ("PUT", "/admin/faults"), ("DELETE", "/admin/faults")}
    | {("GET", path) for path in COMMON_OPERATIONS}
    | EVENTS_ADMIN
)


@pytest.fixture
def inventory_schema(inventory_app: Flask) -> Any:
    """The inventory app's own OpenAPI document, called in-process (WSGI)."""
    return schemathesis.openapi.from_wsgi("/openapi.json", inventory_app)


def test_every_operation_is_fuzzed(inventory_schema: Any) -> None:
    documented = {
        (operation.method.upper(), operation.path)
        for operation in (result.ok() for result in inventory_schema.get_all_operations())
    }
    # (Schemathesis may leave out the document's own route, /openapi.json.)
    assert set(OPERATIONS) <= documented <= set(OPERATIONS) | NOT_FUZZED


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_input_causes_a_server_error(
    inventory_schema: Any,
    identity: Identity,
    make_product: Callable[..., dict[str, Any]],
    method: str,
    path: str,
) -> None:
    for stock in (0, 1, 1000):  # products 1-3 exist, so generated ids reach real rows
        make_product(stock=stock)
    role_token = identity.service_token() if path.startswith("/internal") else None
    headers = bearer(role_token or identity.admin_token())
    statuses = fuzz_operation(inventory_schema[path][method], headers, max_examples=15)
    assert statuses  # the operation was really exercised
