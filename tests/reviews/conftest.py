"""Fixtures of the reviews tests: the app with fake inventory and sales, people, helpers.

The reviews app talks to inventory and sales through the interface of
:mod:`reviews_service.clients`; here that interface is served by
:class:`FakeShop`, an in-memory stand-in whose products, purchases and
outages each test controls. ``test_clients.py`` checks the real clients
against a real HTTP server instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from werkzeug.test import TestResponse

from reviews_service.clients import ReviewsClients
from shopkit.config import Settings
from shopkit.service_client import DependencyUnavailable
from tests.conftest import Identity, bearer


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


@pytest.fixture(scope="session")
def fake_shop() -> FakeShop:
    """The one fake behind the session's reviews app."""
    return FakeShop()


@pytest.fixture
def shop(fake_shop: FakeShop) -> Iterator[FakeShop]:
    """The fake inventory and sales, empty and up at the start of each test."""
    fake_shop.reset()
    yield fake_shop
    fake_shop.reset()


@pytest.fixture(scope="session")
def reviews_app(
    make_settings: Callable[..., Settings], key_resolver: Any, fake_shop: FakeShop
) -> Flask:
    """The reviews app on the test database, with fake inventory and sales clients."""
    from reviews_service import create_app

    clients = ReviewsClients(catalog=FakeCatalog(fake_shop), purchases=FakePurchases(fake_shop))
    return create_app(
        {
            "SETTINGS": make_settings("reviews"),
            "KEY_RESOLVER": key_resolver,
            "REVIEWS_CLIENTS": clients,
            "TESTING": True,
        }
    )


@pytest.fixture
def reviews(reviews_app: Flask) -> FlaskClient:
    """A test client of the reviews app."""
    return reviews_app.test_client()


@pytest.fixture
def count_rows(count_rows: Callable[[str], int]) -> Callable[[str], int]:
    """``count_rows("reviews")``: rows in a reviews-schema table right now.

    Takes bare table names; delegates to the shared ``schema.table`` fixture.
    """

    def count(table: str) -> int:
        return count_rows(f"reviews.{table}")

    return count


@pytest.fixture
def stored(db_engine: Engine) -> Callable[[int], dict[str, Any] | None]:
    """``stored(review_id)``: the review's row as the database has it (``None`` if gone)."""

    def read(review_id: int) -> dict[str, Any] | None:
        with db_engine.connect() as conn:
            row = conn.execute(
                text("SELECT * FROM reviews.reviews WHERE id = :id"), {"id": review_id}
            ).mappings()
            first = row.first()
        return dict(first) if first is not None else None

    return read


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


@pytest.fixture
def world(reviews: FlaskClient, identity: Identity, shop: FakeShop) -> World:
    """Builds customers, purchases and reviews for a test."""
    return World(reviews, identity, shop)


def assert_problem(response: TestResponse, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is a problem document with ``status`` (and ``code``); return its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.get_json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body
