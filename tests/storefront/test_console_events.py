"""The console's Events page on the fake services: streams, groups, outboxes, dead letters,
and the replay and discard buttons (CSRF-protected like every console form)."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

from tests.support.storefront import FakeServices

LAG = {"stream": "events:order", "length": 12, "created": True, "consumers": 1, "pending": 2,
       "lag_entries": 3, "lag_seconds": 4.5}  # fmt: skip
LETTER = {"id": "1712345678901-0", "group": "notifications", "stream": "events:order",
          "entry_id": "1712345670000-0", "event_id": "6a1f5e1e-8a40-4b7e-9d3a-0c4f1b2a3c4d",
          "type": "shop.order.shipped.v1", "error": "KeyError: 'carrier'", "attempts": 8,
          "failed_at": "2026-01-01T12:00:00+00:00", "event": "{}"}  # fmt: skip


def _services(fake: FakeServices, dead: int = 1) -> None:
    """Sales with an outbox, notifications with a group; the others have no events."""
    broker = {"configured": True, "available": True, "detail": None}
    stream = {"stream": "events:order", "length": 12, "groups": [
        {"group": "notifications", "consumers": 1, "pending": 2, "lag_entries": 3,
         "lag_seconds": 4.5}]}  # fmt: skip
    fake.on("sales", "GET", "/admin/events", 200, {
        "service": "sales", "outbox": {"total": 40, "unpublished": 7, "failing": 2,
                                       "oldest_unpublished_age_s": 9.25},
        "streams": [stream], "groups": [], "broker": broker})  # fmt: skip
    fake.on("notifications", "GET", "/admin/events", 200, {
        "service": "notifications", "outbox": None, "streams": [stream],
        "groups": [{"group": "notifications", "streams": ["events:order"], "inbox": 30,
                    "dead_letters": dead, "lag": [LAG]}],
        "broker": broker})  # fmt: skip
    fake.on("notifications", "GET", "/admin/events/dead-letters", 200,
            {"group": "notifications", "total": dead, "items": [LETTER] * dead,
             "next_after": None})  # fmt: skip


def test_the_page_shows_streams_groups_outboxes_and_dead_letters(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    _services(fake)
    fake.down.add("reviews")
    page = client.get("/admin/events")
    assert page.status_code == 200, page.text
    text = page.text
    assert re.search(r'data-stream="events:order".*?class="stream-length"[^>]*>12<', text, re.S)
    assert re.search(r'class="group"[^>]*data-service="notifications".*?class="pending">2<.*?'
                     r'class="lag">3 entries, 4.5 s', text, re.S)  # fmt: skip
    assert re.search(r'data-service="sales"><td>sales</td><td class="backlog">7<', text)
    assert "9.2 s" in text and 'class="inbox"' in text
    assert "KeyError: &#39;carrier&#39;" in text and "shop.order.shipped.v1" in text
    assert (
        'action="/admin/events/notifications/notifications/dead-letters/1712345678901-0/replay"'
        in text
    )
    assert (
        'action="/admin/events/notifications/notifications/dead-letters/1712345678901-0/discard"'
        in text
    )
    assert 'data-service="reviews"' in text  # unreachable: said so
    for call in fake.made("notifications", "GET", "/admin/events/dead-letters"):
        assert call.token == admin and call.params == {"group": "notifications", "limit": 50}
    assert not fake.made("sales", "GET", "/admin/events/dead-letters")  # no group there


def test_no_dead_letters_and_a_broker_away_are_said_plainly(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    _services(fake, dead=0)
    fake.on("customers", "GET", "/admin/events", 200, {
        "service": "customers", "outbox": {"total": 3, "unpublished": 3, "failing": 3,
                                           "oldest_unpublished_age_s": 60.0},
        "streams": None, "groups": [],
        "broker": {"configured": True, "available": False,
                   "detail": "The broker: Connection refused."}})  # fmt: skip
    page = client.get("/admin/events").text
    assert 'id="no-dead-letters"' in page
    assert "The broker: Connection refused." in page
    assert not fake.made("notifications", "GET", "/admin/events/dead-letters")


def test_replay_and_discard_call_the_service_then_come_back(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    path = "/admin/events/dead-letters/1712345678901-0"
    fake.on("notifications", "POST", f"{path}/replay", 200, {"group": "notifications"})
    fake.on("notifications", "POST", f"{path}/discard", 404,
            {"code": "not_found", "detail": "Group 'notifications' has no dead letter."})  # fmt: skip
    _services(fake, dead=0)
    replayed = client.post(
        "/admin/events/notifications/notifications/dead-letters/1712345678901-0/replay"
    )
    assert replayed.status_code == 302 and replayed.headers["Location"].endswith("/admin/events")
    [call] = fake.made("notifications", "POST", f"{path}/replay")
    assert call.params == {"group": "notifications"} and call.token == admin
    page = client.get("/admin/events").text
    assert (
        "Dead letter 1712345678901-0 of notifications/notifications replayed to its group." in page
    )
    gone = client.post("/admin/events/notifications/notifications/dead-letters/1712345678901-0/discard",
                       follow_redirects=True)  # fmt: skip
    assert 'class="flash error"' in gone.text and "has no dead letter" in gone.text


def test_unknown_services_and_actions_are_not_found(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    for path in ("/admin/events/gateway/g/dead-letters/1-0/replay",
                 "/admin/events/notifications/g/dead-letters/1-0/explode"):  # fmt: skip
        assert client.post(path).status_code == 404
    assert not [c for c in fake.calls if "/admin/events" in c.path]


def test_the_buttons_need_the_csrf_token(
    make_app: Callable[..., Flask], fake: FakeServices
) -> None:
    browser = make_app(WTF_CSRF_ENABLED=True).test_client()
    path = "/admin/events/notifications/notifications/dead-letters/1712345678901-0/replay"
    assert browser.post(path).status_code == 400  # no token: "the form expired"
    assert not [c for c in fake.calls if "/admin/events" in c.path]


def test_only_admins_see_the_page(client: FlaskClient, fake: FakeServices, shopper: str) -> None:
    _services(fake)
    assert client.get("/admin/events").status_code == 403
    assert (
        client.post("/admin/events/notifications/notifications/dead-letters/1-0/replay").status_code
        == 403
    )
    assert not [c for c in fake.calls if "/admin/events" in c.path]
