"""The notifications service: events become one notification each; customers see only theirs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select

from notifications_service.models import Base, Notification
from notifications_service.notifications import STREAMS
from notifications_service.worker import build_consumer
from shopkit.events.catalog import stream_for, validate_data
from shopkit.events.envelope import FIELD, Event, encode
from tests.support.database import schema_drift
from tests.support.identity import bearer


def _publish(valkey, type_name: str, data: dict) -> str:
    """Append one event to its stream as the relay would; its id."""
    event_id = str(uuid.uuid4())
    validate_data(type_name, data)
    event = Event(id=event_id, source="/sales", type=type_name, subject=str(data.get("order_id") or data["customer_id"]),
                  time=datetime.now(UTC), data=data, sequence=1)  # fmt: skip
    valkey.xadd(stream_for(type_name.split(".")[1]), {FIELD: encode(event)})
    return event_id


def _count(db_engine: Engine, customer_id: int) -> int:
    with db_engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Notification)
                                .where(Notification.customer_id == customer_id)).scalar_one())  # fmt: skip


def test_the_migration_matches_the_models(db_engine: Engine) -> None:
    assert schema_drift(db_engine, "notifications", Base.metadata) == []


def test_each_order_and_wallet_event_makes_one_notification(
    valkey, broker, database_url, db_engine
) -> None:
    order_id = str(uuid.uuid4())
    ids = [
        _publish(valkey, "shop.order.completed.v1", {"order_id": order_id, "customer_id": 41, "total": "12.50"}),
        _publish(valkey, "shop.wallet.debited.v1", {"customer_id": 41, "amount": "12.50", "balance": "7.50", "order_id": order_id}),
        _publish(valkey, "shop.order.shipped.v1", {"order_id": order_id, "customer_id": 41, "carrier": "DHL", "tracking_number": "JD01"}),
    ]  # fmt: skip
    [(_, fields)] = valkey.xrange(stream_for("order"), count=1)
    valkey.xadd(stream_for("order"), fields)  # the first one delivered a second time
    consumer = build_consumer(database_url, broker.url)
    consumer.ensure_groups()
    for _ in range(20):
        if _count(db_engine, 41) == 3 and all(
            valkey.xinfo_groups(s)[0]["lag"] == 0 for s in STREAMS
        ):
            break
        consumer.poll()
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
    assert set(document["channels"]) == {"order", "wallet"}
    assert all(op["action"] == "receive" for op in document["operations"].values())
