"""The inbox and the live order stream's view, against a fake of the services' HTTP boundary.

What the hub then does with a stream (only the customer's own events, replay,
reconnection) is tested over a real gunicorn worker and a real broker in
``tests/storefront/test_live.py``.
"""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shopkit.config import Settings
from shopkit.events.envelope import FIELD, Event, encode, new_event_id
from shopkit.gunicorn_worker import HANDOVER_ENVIRON, Handover
from shopkit.service_client import ServiceResponse
from storefront import livehub
from storefront.live import MAX_STREAM_S, RECONNECT_JITTER_MS, STREAM_JITTER
from storefront.livehub import (
    FD_RESERVE,
    RECONNECT_MS,
    LiveHub,
    Subscription,
    _update,
    fd_bounded,
)
from storefront.session import User, current_user
from tests.storefront.live_capacity import publish
from tests.support.storefront import FakeServices, log_in

SALE_ID = "3f1b2c4d-0000-4000-8000-000000000001"
NOTE = {"id": 11, "type": "shop.order.shipped.v1", "subject": SALE_ID, "title": "Order shipped",
        "body": "Your order 3f1b2c4d is on its way.", "occurred_at": "2025-01-02T09:00:00+00:00",
        "read_at": None}  # fmt: skip
READ_NOTE = {**NOTE, "id": 10, "type": "shop.wallet.credited.v1", "subject": "4",
             "title": "Wallet topped up", "body": "50.00 added.", "read_at": "2025-01-02T09:30:00+00:00"}  # fmt: skip


def notifications_page(*items: dict[str, Any], unread: int = 1, total: int | None = None) -> dict:
    return {"items": list(items), "page": 1, "page_size": 20,
            "total": len(items) if total is None else total, "unread": unread}  # fmt: skip


# --- inbox ------------------------------------------------------------------------------------


def test_the_inbox_lists_the_shoppers_notifications_with_her_token(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("notifications", "GET", "/notifications", 200, notifications_page(NOTE, READ_NOTE))
    response = client.get("/inbox")
    assert response.status_code == 200
    assert "Order shipped" in response.text and "Wallet topped up" in response.text
    assert "1 unread" in response.text
    assert f"/orders/{SALE_ID}" in response.text  # an order's notification links to it
    (call,) = fake.made("notifications", "GET", "/notifications")
    assert call.token == shopper
    assert call.params == {"page": 1, "page_size": 20}
    # Only the unread one has a "mark as read" button.
    assert response.text.count('class="small mark-read"') == 1


def test_the_inbox_can_show_unread_ones_only(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("notifications", "GET", "/notifications", 200, notifications_page(NOTE))
    assert client.get("/inbox?unread=1").status_code == 200
    (call,) = fake.made("notifications", "GET", "/notifications")
    assert call.params is not None and call.params["unread"] == "true"


def test_marking_one_and_all_read_calls_the_service_as_the_shopper(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("notifications", "POST", "/notifications/11/read", 200, {**NOTE, "read_at": "x"})
    fake.on("notifications", "POST", "/notifications/read", 200, {"marked": 3})
    one = client.post("/inbox/11/read?page=2")
    assert one.status_code == 302 and one.headers["Location"].endswith("/inbox?page=2")
    every = client.post("/inbox/read")
    assert every.status_code == 302
    (marked,) = fake.made("notifications", "POST", "/notifications/11/read")
    (all_marked,) = fake.made("notifications", "POST", "/notifications/read")
    assert marked.token == shopper and all_marked.token == shopper


def test_someone_elses_notification_is_refused_with_the_services_words(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("notifications", "POST", "/notifications/99/read", 404,
            {"code": "not_found", "detail": "Not one of your notifications."})  # fmt: skip
    fake.on("notifications", "GET", "/notifications", 200, notifications_page(NOTE))
    response = client.post("/inbox/99/read", follow_redirects=True)
    assert "Not one of your notifications." in response.text


def test_the_inbox_needs_a_shopper(client: FlaskClient, fake: FakeServices) -> None:
    anonymous = client.get("/inbox")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    assert client.post("/inbox/read").status_code == 302
    log_in(client, fake, "root", role="admin")
    refused = client.get("/inbox")
    assert refused.status_code == 403
    assert "Only shoppers have orders and notifications" in refused.text  # not "admins only"
    assert client.post("/inbox/read").status_code == 403
    assert not fake.made("notifications", "GET", "/notifications")


def test_the_session_keeps_the_customer_id_of_the_login(
    app: Flask, client: FlaskClient, fake: FakeServices
) -> None:
    log_in(client, fake, "ada", customer_id=41)
    cookie = client.get_cookie("shop_session").value
    with app.test_request_context(headers={"Cookie": f"shop_session={cookie}"}):
        assert current_user() == User("ada", "customer", customer_id=41)


def test_the_menu_count_is_a_fragment_that_never_fails(
    client: FlaskClient, fake: FakeServices
) -> None:
    assert client.get("/inbox/count").text == ""  # logged out: nothing, no call
    assert not fake.made("notifications", "GET", "/notifications")
    log_in(client, fake, "ada")
    fake.on("notifications", "GET", "/notifications", 200, notifications_page(NOTE, unread=3))
    counted = client.get("/inbox/count")
    assert counted.status_code == 200 and ">3</span>" in counted.text
    call = fake.made("notifications", "GET", "/notifications")[-1]
    assert call.params == {"page": 1, "page_size": 1, "unread": "true"}
    fake.down.add("notifications")
    assert client.get("/inbox/count").text == ""
    fake.down.discard("notifications")
    fake.on("notifications", "GET", "/notifications", 200, notifications_page(unread=0))
    assert client.get("/inbox/count").text.strip() == ""


def test_pages_load_the_menu_count_after_themselves(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("inventory", "GET", "/products", 200, notifications_page())
    page = client.get("/")
    assert 'id="nav-inbox"' in page.text and 'hx-get="/inbox/count"' in page.text
    # Rendering the page did not wait for the notifications service.
    assert not fake.made("notifications", "GET", "/notifications")


def test_the_menu_count_is_one_quick_call_kept_for_the_next_pages(
    client: FlaskClient, fake: FakeServices, shopper: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("inventory", "GET", "/products", 200, notifications_page())
    fake.on("notifications", "GET", "/notifications", 200, notifications_page(NOTE, unread=3))
    fake.on("notifications", "POST", "/notifications/read", 200, {"marked": 3})
    assert ">3</span>" in client.get("/inbox/count").text
    (call,) = fake.made("notifications", "GET", "/notifications")
    assert call.quick  # one attempt, a short timeout: the menu can do without it
    # The next pages show the kept count at once; only an order's change asks again.
    page = client.get("/")
    assert 'id="inbox-unread"' in page.text and ">3</span>" in page.text
    assert 'hx-trigger="shop-order from:body delay:2s"' in page.text
    assert len(fake.made("notifications", "GET", "/notifications")) == 1
    # Marking read forgets it: the next page asks after itself.
    assert client.post("/inbox/read").status_code == 302
    page = client.get("/")
    assert 'id="inbox-unread"' not in page.text
    assert 'hx-trigger="load, shop-order from:body delay:2s"' in page.text
    # And so it does once the count is older than it is kept.
    assert ">3</span>" in client.get("/inbox/count").text
    monkeypatch.setattr("storefront.inbox.COUNT_KEEP_S", 0.0)
    assert 'hx-trigger="load, shop-order' in client.get("/").text


def test_the_inbox_page_counts_the_unread_once(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("notifications", "GET", "/notifications", 200, notifications_page(NOTE, unread=2))
    page = client.get("/inbox")
    assert ">2</span>" in page.text and "2 unread" in page.text  # the menu has it already
    assert 'hx-trigger="shop-order from:body delay:2s"' in page.text  # no second call
    (call,) = fake.made("notifications", "GET", "/notifications")
    assert not call.quick


# --- the live stream's view -------------------------------------------------------------------


class RecordingHub:
    """Stands in for the hub: records what it was handed (the hub has its own tests)."""

    def __init__(self, room: bool = True) -> None:
        self.room = room
        self.adopted: list[tuple[socket.socket, bytes, Subscription]] = []

    def has_room(self, customer_id: int) -> bool:
        return self.room

    def adopt(self, sock: socket.socket, head: bytes, subscription: Subscription) -> None:
        self.adopted.append((sock, head, subscription))


@pytest.fixture
def live_app(make_app: Callable[..., Flask]) -> tuple[Flask, RecordingHub]:
    app = make_app()
    hub = RecordingHub()
    app.extensions["shop_live"] = hub
    return app, hub


def stream(client: FlaskClient, path: str = "/live/orders", **headers: str) -> tuple[Any, Handover]:
    """GET the stream as the storefront's gunicorn worker would serve it (with a handover)."""
    handover = Handover()
    response = client.get(path, headers=headers, environ_overrides={HANDOVER_ENVIRON: handover})
    return response, handover


def test_a_logged_out_visitor_gets_401_and_nothing_is_handed_over(
    live_app: tuple[Flask, RecordingHub],
) -> None:
    app, hub = live_app
    response, handover = stream(app.test_client())
    assert response.status_code == 401
    assert handover.receiver is None and not hub.adopted


def test_an_admin_has_no_orders_to_follow(
    live_app: tuple[Flask, RecordingHub], fake: FakeServices
) -> None:
    app, _ = live_app
    client = app.test_client()
    log_in(client, fake, "root", role="admin", customer_id=1)
    response, handover = stream(client)
    assert response.status_code == 403 and handover.receiver is None


def test_the_stream_is_the_sessions_customers_whatever_the_query_says(
    live_app: tuple[Flask, RecordingHub], fake: FakeServices
) -> None:
    app, hub = live_app
    client = app.test_client()
    log_in(client, fake, "ada", customer_id=41)
    response, handover = stream(
        client, f"/live/orders?order={SALE_ID}&customer_id=42&cid=42&since=1700000005000"
    )
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.text.startswith("retry: ")
    retry = int(response.text.removeprefix("retry: ").strip())
    assert RECONNECT_MS <= retry <= RECONNECT_MS + RECONNECT_JITTER_MS  # jittered
    assert handover.receiver is not None
    left, right = socket.socketpair()
    try:
        handover.receiver(left, b"head")
        ((sock, head, subscription),) = hub.adopted
        assert sock is left and head == b"head"
        assert subscription.customer_id == 41  # from the session's token, nothing else
        assert subscription.order_id == SALE_ID
        assert subscription.after == (1700000003000, 0)  # since, less the clock margin
        assert subscription.session_id is not None
        # Ends before the token must be renewed (ttl 900 s), by a random share of the span.
        span = subscription.until - time.time()
        assert (1 - STREAM_JITTER) * MAX_STREAM_S - 5 <= span <= MAX_STREAM_S
    finally:
        left.close()
        right.close()


def test_a_reconnection_replays_from_its_last_event_id(
    live_app: tuple[Flask, RecordingHub], fake: FakeServices
) -> None:
    app, hub = live_app
    client = app.test_client()
    log_in(client, fake, "ada", customer_id=41)
    _, handover = stream(client, "/live/orders?since=5", **{"Last-Event-ID": "1700000000123-4"})
    assert handover.receiver is not None
    handover.receiver(socket.socket(), b"")
    sock, _, subscription = hub.adopted[0]
    sock.close()
    assert subscription.after == (1700000000123, 4)


def test_without_a_broker_a_handover_or_room_the_page_is_told_not_to_retry(
    make_app: Callable[..., Flask], fake: FakeServices
) -> None:
    settings = Settings.from_env("storefront", log_level="WARNING")
    app = make_app(SETTINGS=settings)  # no EVENTS_URL: no hub
    assert "shop_live" not in app.extensions
    client = app.test_client()
    log_in(client, fake, "ada", customer_id=41)
    response, handover = stream(client)
    assert response.status_code == 204 and handover.receiver is None
    app.extensions["shop_live"] = RecordingHub()
    assert client.get("/live/orders").status_code == 204  # Flask's own server: no handover
    app.extensions["shop_live"] = RecordingHub(room=False)
    response, handover = stream(client)
    assert response.status_code == 204 and handover.receiver is None


def test_a_session_without_a_customer_id_has_nothing_to_follow(
    live_app: tuple[Flask, RecordingHub], fake: FakeServices
) -> None:
    app, hub = live_app
    client = app.test_client()
    log_in(client, fake, "ada")  # a token without cid
    response, handover = stream(client)
    assert response.status_code == 403 and handover.receiver is None and not hub.adopted


# --- the live pages ---------------------------------------------------------------------------

SALE = {"id": SALE_ID, "status": "completed", "failure_code": None, "username": "ada",
        "items": [{"product_id": 7, "product_name": "Trail Shoes", "quantity": 2,
                   "unit_price": "89.90", "line_total": "179.80"}], "total": "179.80",
        "history": [], "created_at": "2025-01-01T10:00:00+00:00",
        "updated_at": "2025-01-01T10:00:01+00:00"}  # fmt: skip


def test_the_order_page_follows_its_order_and_serves_its_live_part(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    fake.on("sales", "GET", f"/sales/{SALE_ID}", 200, SALE)
    fake.on("customers", "GET", "/customers/ada", 200, {"address": "1 Main St"})
    page = client.get(f"/orders/{SALE_ID}")
    assert page.status_code == 200
    assert f'data-live-url="/live/orders?order={SALE_ID}&amp;since=' in page.text
    assert 'src="/static/live.js"' in page.text
    part = client.get(f"/orders/{SALE_ID}?fragment=1")
    assert part.status_code == 200
    assert 'id="order-status"' in part.text and 'id="cancel-order"' in part.text
    assert "<html" not in part.text and "Delivery address" not in part.text


def test_the_order_list_serves_its_table_alone_for_the_live_reload(
    client: FlaskClient, fake: FakeServices, shopper: str
) -> None:
    body = {"items": [SALE], "page": 1, "page_size": 20, "total": 1}
    fake.on("sales", "GET", "/customers/ada/sales", 200, body)
    page = client.get("/orders?status=completed")
    assert 'data-live-fragment="/orders?status=completed&amp;page=1&amp;fragment=1"' in page.text
    part = client.get("/orders?status=completed&page=1&fragment=1")
    assert part.status_code == 200 and "<html" not in part.text
    assert SALE_ID[:8] in part.text and "paid" in part.text


# --- ratings from the catalogue ---------------------------------------------------------------

RATED = {"id": 7, "name": "Trail Shoes", "category": "clothes", "price": "89.90",
         "description": "Light.", "stock": 4, "archived": False,
         "rating": {"average": "4.50", "count": 2}}  # fmt: skip
UNRATED = {**RATED, "id": 8, "name": "Plain Socks", "rating": {"average": None, "count": 0}}
OLD_STYLE = {**RATED, "id": 9, "name": "Old Hat"}
del OLD_STYLE["rating"]


def test_the_catalogue_shows_ratings_from_inventory_and_sorts_by_them(
    client: FlaskClient, fake: FakeServices
) -> None:
    fake.on("inventory", "GET", "/products", 200,
            {"items": [RATED, UNRATED, OLD_STYLE], "page": 1, "page_size": 12, "total": 3})  # fmt: skip
    page = client.get("/?sort=rating")
    assert page.status_code == 200
    assert "4.50 (2)" in page.text and page.text.count('class="rating"') == 1
    assert '<option value="rating" selected>Best rated</option>' in page.text
    (call,) = fake.made("inventory", "GET", "/products")
    assert call.params is not None and call.params["sort"] == "rating"
    assert not fake.made("reviews", "GET", "/reviews")  # no call to reviews for ratings


def test_an_inventory_without_the_rating_sort_still_shows_the_catalogue(
    client: FlaskClient, fake: FakeServices
) -> None:
    def answer(call: Any) -> ServiceResponse:
        if (call.params or {}).get("sort") == "rating":
            return ServiceResponse(422, {"code": "validation_error", "detail": "Invalid input.",
                                         "errors": {"sort": ["Must be one of: newest."]}})  # fmt: skip
        return ServiceResponse(200, {"items": [OLD_STYLE], "page": 1, "page_size": 12, "total": 1})

    fake.handle("inventory", "GET", "/products", answer)
    page = client.get("/?sort=rating")
    assert page.status_code == 200
    assert "Old Hat" in page.text and "Sorting by rating is not available yet" in page.text


def test_the_hub_never_holds_more_streams_than_the_process_may_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert fd_bounded(10) == 10
    bounded = fd_bounded(10**9)
    raised, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert raised >= soft  # raised towards the hard limit, never lowered
    if hard != resource.RLIM_INFINITY:
        assert bounded == raised - FD_RESERVE <= hard - FD_RESERVE


def test_building_the_hub_leaves_the_file_limit_to_its_start() -> None:
    hub = LiveHub("redis://127.0.0.1:1/0", max_streams=10**9)
    assert hub.max_streams == 10**9  # nothing bounded (nor any limit raised) by building it
    try:
        hub._ensure_started()
        assert hub.max_streams == fd_bounded(10**9)
    finally:
        hub.stop()


def test_a_reader_that_fails_unexpectedly_is_logged_and_starts_again(
    broker: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The hub's reader of the order stream meets an error it does not expect on one entry:
    it is logged, the reader starts again past that entry, and the pages get what follows."""
    real_update, failures = livehub._update, []

    def update_failing_once(entry_id: str, fields: dict[Any, Any]) -> Any:
        if not failures:
            failures.append(entry_id)
            raise RuntimeError("an entry the reader did not expect")
        return real_update(entry_id, fields)

    monkeypatch.setattr(livehub, "_update", update_failing_once)
    monkeypatch.setattr(livehub, "RESTART_S", 0.1)
    hub = LiveHub(broker.url)
    mine, page = socket.socketpair()
    try:
        hub.adopt(mine, b"HTTP/1.1 200 OK\r\n\r\n", Subscription(77, "s-77"))
        page.settimeout(10)
        assert page.recv(100).startswith(b"HTTP/1.1 200")
        (poisoned,) = publish(broker.url, 77)
        deadline = time.monotonic() + 10
        while not failures:
            assert time.monotonic() < deadline, "the reader never read the entry"
            time.sleep(0.05)
        (after,) = publish(broker.url, 77)
        received = b""
        while after.encode() not in received:
            received += page.recv(4096)
        assert poisoned.encode() not in received  # skipped, not retried for ever
        assert "live updates: _follow failed; it starts again" in caplog.text
    finally:
        hub.stop()
        page.close()


def test_a_logout_ends_the_sessions_live_streams_at_once(
    make_app: Callable[..., Flask], fake: FakeServices
) -> None:
    """The app tells its hub each logged-out session; the hub closes that session's streams
    (a real hub on socket pairs, no broker needed) and leaves the others open."""
    settings = Settings.from_env(
        "storefront", log_level="WARNING", events_url="redis://127.0.0.1:1/0"
    )
    app = make_app(SETTINGS=settings)
    hub = app.extensions["shop_live"]
    revoked = app.extensions["shop_revoked_sessions"]
    assert hub.end_session in revoked.listeners
    told: list[str] = []
    revoked.listeners.append(told.append)
    client = app.test_client()
    log_in(client, fake, "ada", customer_id=41)
    with client.session_transaction() as session:
        sid = session["sid"]
    fake.on("customers", "POST", "/auth/logout", 204, {})
    assert client.post("/logout").status_code == 302
    assert told == [sid]

    mine, my_page = socket.socketpair()
    other, other_page = socket.socketpair()
    try:
        hub.adopt(mine, b"HTTP/1.1 200 OK\r\n\r\n", Subscription(41, "s-1"))
        hub.adopt(other, b"HTTP/1.1 200 OK\r\n\r\n", Subscription(41, "s-2"))
        for page in (my_page, other_page):
            page.settimeout(5)
            assert page.recv(100).startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 5
        while hub.streams < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        hub.end_session("s-1")
        assert my_page.recv(100) == b""  # closed
        other_page.settimeout(0.3)
        with pytest.raises(TimeoutError):
            other_page.recv(100)  # still open
    finally:
        hub.stop()
        for sock in (my_page, other_page):
            sock.close()


def test_a_page_is_told_the_catalogued_events_name_of_what_happened() -> None:
    def entry(kind: str) -> dict[bytes, bytes]:
        event = Event(str(new_event_id()), "sales", kind, SALE_ID, datetime.now(UTC),
                      {"customer_id": 41, "order_id": SALE_ID})  # fmt: skip
        return {FIELD.encode(): encode(event)}

    shipped = _update("1700000000000-1", entry("shop.order.shipped.v1"))
    assert shipped is not None and b'"event":"shipped"' in shipped.message
    unknown = _update("1700000000000-2", entry("shop.order.teleported.v9"))
    assert unknown is not None and b'"event":"shop.order.teleported.v9"' in unknown.message
