"""The one product factory of the tests: a valid body, and creating it through an API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def product_payload(**overrides: Any) -> dict[str, Any]:
    """A valid product body (``overrides`` replace or add fields)."""
    return {
        "name": "Espresso beans",
        "category": "food",
        "price": "12.50",
        "description": "Dark roast, 1 kg bag.",
        "stock": 10,
        **overrides,
    }


def create_product(post: Callable[..., Any], admin: dict[str, str], **overrides: Any) -> Any:
    """Create a product as the admin and return its JSON; the API must answer 201.

    ``post(json=..., headers=...)`` sends ``POST /products``: a Flask test client's
    ``functools.partial(client.post, "/products")`` in-process, or
    ``functools.partial(requests.post, url + "/products", timeout=10)`` over HTTP.
    """
    response = post(json=product_payload(**overrides), headers=admin)
    is_flask = hasattr(response, "get_json")
    body = response.get_json() if is_flask else response.json()
    assert response.status_code == 201, body
    return body
