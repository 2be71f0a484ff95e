"""Fixtures of the reviews tests: the app with a fake inventory, order events, people, helpers.

The reviews app talks to inventory through the interface of
:mod:`reviews_service.clients`; here that interface is served by
:class:`tests.support.reviews.FakeShop`, an in-memory stand-in whose products and
outages each test controls. ``test_clients.py`` checks the real client against a
real HTTP server instead. Purchases reach reviews as order events, applied by
the real handler to the test database (:class:`tests.support.reviews.OrderEvents`);
``test_purchases.py`` runs them through a real broker and consumer group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import sessionmaker

from reviews_service.clients import ReviewsClients
from shopkit.config import Settings
from tests.support.identity import Identity
from tests.support.reviews import FakeCatalog, FakeShop, OrderEvents, World


@pytest.fixture(scope="session")
def fake_shop() -> FakeShop:
    """The one fake behind the session's reviews app."""
    return FakeShop()


@pytest.fixture
def shop(fake_shop: FakeShop) -> Iterator[FakeShop]:
    """The fake inventory, empty and up at the start of each test."""
    fake_shop.reset()
    yield fake_shop
    fake_shop.reset()


@pytest.fixture(scope="session")
def reviews_app(
    make_settings: Callable[..., Settings], key_resolver: Any, fake_shop: FakeShop
) -> Flask:
    """The reviews app on the test database, with a fake inventory client."""
    from reviews_service import create_app

    clients = ReviewsClients(catalog=FakeCatalog(fake_shop))
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


@pytest.fixture
def orders(db_engine: Engine) -> OrderEvents:
    """Applies order events to reviews' verified purchases (the real handler, the test
    database; its tables are emptied before each test like every table)."""
    return OrderEvents(sessionmaker(db_engine))


@pytest.fixture
def world(reviews: FlaskClient, identity: Identity, shop: FakeShop, orders: OrderEvents) -> World:
    """Builds customers, purchases and reviews for a test."""
    return World(reviews, identity, shop, orders)
