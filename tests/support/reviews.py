"""Reviews' tests' helpers: a fake inventory and sales, people and reviews, problem checks."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from shopkit.service_client import DependencyUnavailable
from tests.support.identity import Identity, bearer


@dataclass
class FakeShop:
    """What inventory and sales know, as far as reviews can ask."""

    products: set[int] = field(default_factory=set)
    purchases: set[tuple[int, int]] = field(default_factory=set)
    down: set[str] = field(default_factory=set)
    everything: bool = False  # every product exists and everybody bought it (fuzzing)
    barrier: threading.Barrier | None = None  # makes concurrent submissions meet
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def reset(self) -> None:
        """Forget everything (before each test)."""
        self.products.clear()
        self.purchases.clear()
        self.down.clear()
        self.everything = False
        self.barrier = None
        self.calls.clear()

    def sell(self, customer_id: int, product_id: int) -> None:
        """Record a completed purchase (the product exists from now on)."""
        self.products.add(product_id)
        self.purchases.add((customer_id, product_id))


class FakeCatalog:
    """Inventory as :class:`reviews_service.clients.Catalog`."""

    def __init__(self, shop: FakeShop) -> None:
        self.shop = shop

    def product_exists(self, product_id: int) -> bool:
        self.shop.calls.append(("inventory", product_id))
        if "inventory" in self.shop.down:
            raise DependencyUnavailable("inventory")
        return self.shop.everything or product_id in self.shop.products


class FakePurchases:
    """Sales as :class:`reviews_service.clients.Purchases`."""

    def __init__(self, shop: FakeShop) -> None:
        self.shop = shop

    def has_purchased(self, customer_id: int, product_id: int) -> bool:
        self.shop.calls.append(("sales", customer_id, product_id))
        if "sales" in self.shop.down:
            raise DependencyUnavailable("sales")
        if self.shop.barrier is not None:
            self.shop.barrier.wait()
        return self.shop.everything or (customer_id, product_id) in self.shop.purchases


@dataclass(frozen=True)
class Person:
    """A registered customer and their Authorization header."""

    id: int
    username: str
    headers: dict[str, str]


class World:
    """Customers, purchases and reviews, made through the real APIs (and the fake shop)."""

    def __init__(self, client: FlaskClient, identity: Identity, shop: FakeShop) -> None:
        self.client = client
        self.identity = identity
        self.shop = shop
        self._admin: dict[str, str] | None = None

    @property
    def admin(self) -> dict[str, str]:
        """Authorization header of the bootstrap admin."""
        if self._admin is None:
            self._admin = bearer(self.identity.admin_token())
        return self._admin

    def customer(self, username: str | None = None) -> Person:
        """A new customer who bought nothing."""
        profile, token = self.identity.new_customer(username=username)
        return Person(profile["id"], profile["username"], bearer(token))

    def buyer(self, *product_ids: int, username: str | None = None) -> Person:
        """A new customer with a completed purchase of each of ``product_ids``."""
        person = self.customer(username)
        for product_id in product_ids:
            self.shop.sell(person.id, product_id)
        return person

    def submit(
        self, person: Person, product_id: int, rating: int = 5, comment: str = "Good."
    ) -> TestResponse:
        """``POST /reviews`` as ``person``."""
        return self.client.post(
            "/reviews",
            json={"product_id": product_id, "rating": rating, "comment": comment},
            headers=person.headers,
        )

    def review(
        self, person: Person, product_id: int, rating: int = 5, comment: str = "Good."
    ) -> dict[str, Any]:
        """Submit a review that must succeed; return it."""
        response = self.submit(person, product_id, rating, comment)
        assert response.status_code == 201, response.get_json()
        return response.get_json()  # type: ignore[no-any-return]

    def moderate(self, review_id: int | str, action: str, note: str | None = None) -> TestResponse:
        """``POST /reviews/{id}/moderation`` as the admin."""
        body: dict[str, Any] = {"action": action}
        if note is not None:
            body["note"] = note
        return self.client.post(f"/reviews/{review_id}/moderation", json=body, headers=self.admin)

    def approve(self, review_id: int) -> dict[str, Any]:
        """Approve a review (must succeed); return it."""
        response = self.moderate(review_id, "approve")
        assert response.status_code == 200, response.get_json()
        return response.get_json()  # type: ignore[no-any-return]

    def approved_review(self, product_id: int, rating: int = 5, comment: str = "Good.") -> Any:
        """A new buyer's approved review of ``product_id``: ``(person, review)``."""
        person = self.buyer(product_id)
        review = self.review(person, product_id, rating, comment)
        return person, self.approve(review["id"])


def assert_problem(response: TestResponse, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is a problem document with ``status`` (and ``code``); return its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.get_json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body
