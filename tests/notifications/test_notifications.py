"""The notifications service: events become one notification each; customers see only theirs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import Engine, select

from notifications_service.models import Base, Notification
from notifications_service.worker import build_consumer
from shopkit.events.catalog import stream_for
from tests.support.database import schema_drift
from tests.support.events import publish
from tests.support.identity import bearer
from tests.support.notifications import consume_until, notified


def test_the_migration_matches_the_models(db_engine: Engine) -> None:
    assert schema_drift(db_engine, "notifications", Base.metadata) == []


def test_each_order_and_wallet_event_makes_one_notification(
    valkey, broker, database_url, db_engine
) -> None:
    order_id = str(uuid.uuid4())
    ids = [
        publish(valkey, "shop.order.completed.v1", {"order_id": order_id, "customer_id": 41, "total": "12.50"}),
        publish(valkey, "shop.wallet.debited.v1", {"customer_id": 41, "amount": "12.50", "balance": "7.50", "order_id": order_id}),
        publish(valkey, "shop.order.shipped.v1", {"order_id": order_id, "customer_id": 41, "carrier": "DHL", "tracking_number": "JD01"}),
    ]  # fmt: skip
    [(_, fields)] = valkey.xrange(stream_for("order"), count=1)
    valkey.xadd(stream_for("order"), fields)  # the first one delivered a second time
    consumer = build_consumer(database_url, broker.url)
    consume_until(consumer, valkey, lambda: notified(db_engine, 41) == 3, rounds=20)
    with db_engine.connect() as conn:
        rows = conn.execute(
            select(Notification.event_id, Notification.title, Notification.body)
            .where(Notification.customer_id == 41).order_by(Notification.id)
        ).all()  # fmt: skip
    assert sorted(str(row.event_id) for row in rows) == sorted(ids)
    titles = {row.title: row.body for row in rows}
    assert "tracking number JD01" in titles["Order shipped"]
    assert "12.50" in titles["Order confirmed"]
    assert "7.50" in titles["Wallet debited"]


def _notify(db_engine: Engine, customer_id: int, count: int) -> list[int]:
    with db_engine.begin() as conn:
        return list(conn.execute(
            Notification.__table__.insert().returning(Notification.id),
            [{"customer_id": customer_id, "event_id": uuid.uuid4(), "type": "shop.order.delivered.v1",
              "subject": "o", "title": f"t{i}", "body": "b", "occurred_at": datetime.now(UTC)}
             for i in range(count)],
        ).scalars())  # fmt: skip


def test_a_customer_lists_only_their_own_newest_first(notifications, identity, db_engine) -> None:
    me, token = identity.new_customer()
    other, _ = identity.new_customer()
    mine = _notify(db_engine, me["id"], 3)
    _notify(db_engine, other["id"], 2)
    response = notifications.get("/notifications?page_size=2", headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert [item["id"] for item in body["items"]] == [mine[2], mine[1]]
    assert body["total"] == 3
    assert body["unread"] == 3


def test_marking_read(notifications, identity, db_engine) -> None:
    me, token = identity.new_customer()
    _other, other_token = identity.new_customer()
    first, second = _notify(db_engine, me["id"], 2)
    response = notifications.post(f"/notifications/{first}/read", headers=bearer(other_token))
    assert response.status_code == 404
    assert response.content_type == "application/problem+json"
    response = notifications.post(f"/notifications/{first}/read", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json()["read_at"] is not None
    unread = notifications.get("/notifications?unread=true", headers=bearer(token)).get_json()
    assert [item["id"] for item in unread["items"]] == [second]
    assert unread["unread"] == 1
    marked = notifications.post("/notifications/read", headers=bearer(token)).get_json()
    assert marked == {"marked": 1}


def test_bad_requests_are_clear_problems(notifications, identity) -> None:
    _, token = identity.new_customer()
    assert notifications.get("/notifications").status_code == 401
    response = notifications.get("/notifications?page=0", headers=bearer(token))
    assert response.status_code in (400, 422)
    assert response.content_type == "application/problem+json"
    admin = identity.admin_token()
    assert notifications.get("/notifications", headers=bearer(admin)).status_code == 403


def test_it_serves_its_asyncapi_document(notifications) -> None:
    document = notifications.get("/asyncapi.json").get_json()
    assert document["asyncapi"] == "3.0.0"
    assert set(document["channels"]) == {"order", "wallet", "customer"}
    assert all(op["action"] == "receive" for op in document["operations"].values())
