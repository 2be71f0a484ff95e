"""Reviews' tests' helpers: a fake inventory, order events, people and reviews, problem checks."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from reviews_service.purchases import apply_order_events
from shopkit.events.envelope import Event
from shopkit.service_client import DependencyUnavailable
from tests.support.events import new_event
from tests.support.identity import Identity, bearer


@dataclass
class FakeShop:
    """What inventory knows, as far as reviews can ask."""

    products: set[int] = field(default_factory=set)
    down: set[str] = field(default_factory=set)
    everything: bool = False  # every product exists (fuzzing)
    barrier: threading.Barrier | None = None  # makes concurrent submissions meet
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def reset(self) -> None:
        """Forget everything (before each test)."""
        self.products.clear()
        self.down.clear()
        self.everything = False
        self.barrier = None
        self.calls.clear()


def order_event(name: str, order_id: str, customer_id: int, sequence: int, **data: Any) -> Event:
    """``shop.order.<name>.v1`` of one order, as sales emits it (its data checked against
    the catalogue's schema)."""
    type_name = f"shop.order.{name}.v1"
    body = {"order_id": order_id, "customer_id": customer_id, **data}
    return new_event(type_name, body, sequence=sequence, subject=order_id)


def placed(order_id: str, customer_id: int, *product_ids: int) -> Event:
    """``shop.order.placed.v1`` with one line of each product."""
    lines = [{"product_id": product_id, "quantity": 1} for product_id in product_ids]
    return order_event("placed", order_id, customer_id, 1, lines=lines)


class OrderEvents:
    """Order events applied to reviews' verified purchases by the real batch handler,
    in a transaction of their own (as the consumer group would, minus the broker)."""

    def __init__(self, sessions: Callable[[], Session]) -> None:
        self.sessions = sessions

    def apply(self, *events: Event) -> None:
        """Apply ``events`` as one batch."""
        with self.sessions() as session, session.begin():
            apply_order_events(session, list(events))

    def paid(self, customer_id: int, *product_ids: int) -> str:
        """A new order of ``product_ids`` by ``customer_id``, placed and completed; its id."""
        order_id = str(uuid.uuid4())
        self.apply(
            placed(order_id, customer_id, *product_ids),
            order_event("completed", order_id, customer_id, 2, total="1.00"),
        )
        return order_id


class FakeCatalog:
    """Inventory as :class:`reviews_service.clients.Catalog`."""

    def __init__(self, shop: FakeShop) -> None:
        self.shop = shop

    def product_exists(self, product_id: int) -> bool:
        self.shop.calls.append(("inventory", product_id))
        if "inventory" in self.shop.down:
            raise DependencyUnavailable("inventory")
        if self.shop.barrier is not None:
            self.shop.barrier.wait()
        return self.shop.everything or product_id in self.shop.products


@dataclass(frozen=True)
class Person:
    """A registered customer and their Authorization header."""

    id: int
    username: str
    headers: dict[str, str]


class World:
    """Customers, purchases and reviews, made through the real APIs, the fake inventory and
    order events."""

    def __init__(
        self, client: FlaskClient, identity: Identity, shop: FakeShop, orders: OrderEvents
    ) -> None:
        self.client = client
        self.identity = identity
        self.shop = shop
        self.orders = orders
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
        """A new customer with a paid order of ``product_ids`` (which exist from now on)."""
        person = self.customer(username)
        self.shop.products.update(product_ids)
        if product_ids:
            self.orders.paid(person.id, *product_ids)
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


#: The answers of a review whose writer's purchase reviews does not know (yet).
UNKNOWN_PURCHASE = {(403, "not_a_buyer"), (409, "purchase_pending")}


def once_purchase_known(send: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """``send()`` (a review's POST over HTTP, a ``requests`` response) again while reviews
    does not know the writer's purchase yet; the first other answer, or the last one.

    Reviews learns purchases from order events, a moment after the purchase
    (docs/events.rst, "Reviews"): a script that reviews right after buying waits
    for them, as this does, well within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        response = send()
        code = (response.json() or {}).get("code") if response.status_code >= 400 else None
        if (response.status_code, code) not in UNKNOWN_PURCHASE or time.monotonic() > deadline:
            return response
        time.sleep(0.05)
