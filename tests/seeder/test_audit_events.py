"""The audit's event checks over hand-made data (no services): each violation caught, in-flight
events and changes forgiven, a clean shop clean."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from seeder.audit_events import EventsView, check_events
from shopkit.events.consumer import ConsumerSettings

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OLD = (NOW - timedelta(minutes=10)).isoformat()
RECENT = (NOW - timedelta(seconds=5)).isoformat()
GROUP = ("notifications", "notifications")

Record = dict[str, Any]


def row(type_name: str, published: str | None = OLD, created: str = OLD, **extra: Any) -> Record:
    """An outbox row as ``GET /admin/events/outbox`` lists it."""
    return {"id": 1, "event_id": str(uuid.uuid4()), "type": type_name,
            "aggregate": type_name.split(".")[1], "aggregate_id": "x", "sequence": 1,
            "created_at": created, "published_at": published, "attempts": 0,
            "last_error": None, **extra}  # fmt: skip


def applied(outbox_row: Record, applied_at: str = OLD, **effects: int) -> Record:
    """The inbox row of ``outbox_row``, with the effects it made (one each by default)."""
    made = {"notifications": 1, "mails": 1 if outbox_row["aggregate"] == "order" else 0,
            "mails_unsent": 0, **effects}  # fmt: skip
    if outbox_row["aggregate"] != "order":
        made = {k: v for k, v in made.items() if k == "notifications" or v}
    return {"event_id": outbox_row["event_id"], "type": outbox_row["type"],
            "stream": f"events:{outbox_row['aggregate']}", "applied_at": applied_at,
            "effects": made}  # fmt: skip


def view(
    outbox: dict[str, list[Record]], inbox: list[Record], dead: list[Record] = ()
) -> EventsView:  # type: ignore[assignment]
    """Sales and customers emitting, notifications reading orders and wallets."""
    overviews = {
        "sales": {"outbox": {}, "groups": []},
        "customers": {"outbox": {}, "groups": []},
        "notifications": {"outbox": None, "groups": [
            {"group": "notifications", "streams": ["events:order", "events:wallet"]}]},
    }  # fmt: skip
    return EventsView(overviews=overviews, outboxes=outbox, inboxes={GROUP: inbox},
                      dead_letters={GROUP: list(dead)})  # fmt: skip


def run(events: EventsView, sales: dict[str, Record] | None = None,
        products: list[Record] | None = None) -> dict[str, list[str]]:  # fmt: skip
    """The failing checks' violations, by check name."""
    checks = check_events(events, NOW, sales=sales or {}, products=products or [], margin_s=30)
    return {c.name: c.violations for c in checks if not c.ok}


def test_a_clean_shop_passes_every_check() -> None:
    placed, credited = row("shop.order.placed.v1"), row("shop.wallet.credited.v1")
    stock = row("shop.product.stock_changed.v1")  # nobody here reads products: not judged
    events = view({"sales": [placed], "customers": [credited], "inventory": [stock]},
                  [applied(placed), applied(credited)])  # fmt: skip
    checks = check_events(events, NOW, sales={}, products=[], margin_s=30)
    assert [c.ok for c in checks] == [True] * len(checks) and len(checks) == 5
    assert {c.name: c.checked for c in checks}[
        "every published event is applied by each group that reads its stream"
    ] == 2


def test_an_old_unpublished_row_is_a_violation_a_young_one_in_flight() -> None:
    stuck = row("shop.order.completed.v1", published=None, attempts=4, last_error="refused")
    young = row("shop.order.completed.v1", published=None, created=RECENT)
    failing = run(view({"sales": [stuck, young]}, []))
    [message] = failing["every outbox row is published (rows younger than 30 s in flight)"]
    assert stuck["event_id"] in message and "4 attempts: refused" in message


def test_a_published_event_a_group_never_applied_is_a_violation() -> None:
    lost, late, dead = (row("shop.order.shipped.v1"), row("shop.order.shipped.v1", published=RECENT),
                        row("shop.wallet.debited.v1"))  # fmt: skip
    letter = {"id": "5-0", "event_id": dead["event_id"], "type": dead["type"], "attempts": 8,
              "error": "KeyError: 'customer_id'"}  # fmt: skip
    failing = run(view({"sales": [lost, late], "customers": [dead]}, [], [letter]))
    [never] = failing["every published event is applied by each group that reads its stream"]
    assert lost["event_id"] in never and "notifications/notifications" in never
    [given_up] = failing["no dead letters (events a group gave up on)"]
    assert "5-0" in given_up and "KeyError" in given_up and dead["event_id"] in given_up


def test_an_event_older_than_the_inboxes_keep_their_rows_is_not_judged() -> None:
    """Groups prune inbox rows after ``inbox_keep_s``, while an outbox keeps each aggregate's
    newest row for ever: so old, the missing inbox row is no lost event."""
    kept = ConsumerSettings().inbox_keep_s
    ancient = (NOW - timedelta(seconds=kept + 3600)).isoformat()
    recent_enough = (NOW - timedelta(seconds=kept - 3600)).isoformat()
    pruned = row("shop.order.delivered.v1", published=ancient, created=ancient)
    lost = row("shop.order.delivered.v1", published=recent_enough, created=recent_enough)
    failing = run(view({"sales": [pruned, lost]}, []))
    [never] = failing["every published event is applied by each group that reads its stream"]
    assert lost["event_id"] in never  # still within the keep: a lost event


def test_an_effect_made_twice_or_missing_is_a_violation() -> None:
    twice, no_mail = row("shop.order.completed.v1"), row("shop.order.cancelled.v1")
    wallet_mail = row("shop.wallet.refunded.v1")
    inbox = [applied(twice, notifications=2), applied(no_mail, mails=0),
             applied(wallet_mail, mails=1)]  # fmt: skip
    failing = run(view({"sales": [twice, no_mail], "customers": [wallet_mail]}, inbox))
    found = failing["each applied event made its effects exactly once (notifications, mails)"]
    assert len(found) == 3
    assert any(twice["event_id"] in m and "made 2 notifications, not 1" in m for m in found)
    assert any(no_mail["event_id"] in m and "made 0 mails, not 1" in m for m in found)
    assert any(wallet_mail["event_id"] in m and "made 1 mails, not 0" in m for m in found)


def test_a_mail_still_unsent_after_the_margin_is_a_violation() -> None:
    old, new = row("shop.order.completed.v1"), row("shop.order.completed.v1")
    inbox = [applied(old, mails_unsent=1), applied(new, applied_at=RECENT, mails_unsent=1)]
    failing = run(view({"sales": [old, new]}, inbox))
    [unsent] = failing["every order event's mail was sent"]
    assert old["event_id"] in unsent


def review(product: int, rating: int, status: str = "approved", updated: str = OLD) -> Record:
    return {"id": 1, "product_id": product, "rating": rating, "status": status,
            "updated_at": updated}  # fmt: skip


def product(product_id: int, average: str | None, count: int) -> Record:
    return {"id": product_id, "name": f"P{product_id}", "stock": 1,
            "rating": {"average": average, "count": count}}  # fmt: skip


def test_ratings_equal_the_approved_reviews() -> None:
    events = view({}, [])
    events.reviews = [review(1, 5), review(1, 4), review(1, 4), review(1, 1, "rejected"),
                      review(2, 3, "pending"), review(3, 2), review(4, 5, updated=RECENT)]  # fmt: skip
    products = [product(1, "4.33", 3), product(2, None, 0), product(3, "2.50", 1),
                product(4, None, 0), product(5, "4.00", 1)]  # fmt: skip
    found = run(events, products=products)[
        "inventory's ratings equal the approved reviews' average and count"
    ]
    assert len(found) == 2  # 1 (4.333... shown 4.33) and 2 are right; 4 changed just now
    assert any(m.startswith("product 3: rated 2.50 from 1 reviews") for m in found)
    assert any(m.startswith("product 5: rated 4.00 from 1 reviews, 0 approved") for m in found)


def test_without_ratings_on_products_the_check_is_left_out_and_noted() -> None:
    events = view({}, [])
    events.reviews = [review(1, 5)]
    checks = check_events(events, NOW, sales={}, products=[{"id": 1, "stock": 2}], margin_s=30)
    assert not any("ratings" in c.name for c in checks)
    assert any("no rating" in note for note in events.notes)


def order(status: str, customer: int, *products: int, updated: str = OLD) -> Record:
    return {"id": str(uuid.uuid4()), "status": status, "customer_id": customer,
            "items": [{"product_id": p, "quantity": 1} for p in products],
            "updated_at": updated}  # fmt: skip


def test_verified_purchases_equal_the_paid_orders_pairs() -> None:
    paid, shipped = order("completed", 7, 1, 2), order("shipped", 8, 3)
    cancelled, failed = order("cancelled", 9, 4), order("failed", 9, 5)
    changing = order("completed", 10, 6, updated=RECENT)
    sales = {o["id"]: o for o in (paid, shipped, cancelled, failed, changing)}
    events = view({}, [])

    def verified(*pairs: tuple[int, int]) -> list[Record]:
        return [{"customer_id": c, "product_id": p, "order_id": "o"} for c, p in pairs]

    events.verified = verified((7, 1), (7, 2), (8, 3), (9, 4))
    assert run(events, sales) == {}
    events.verified = verified((7, 1), (8, 3), (9, 5))  # (7, 2) missing; (9, 5) only failed
    found = run(events, sales)[
        "reviews' verified purchases equal the paid orders' (customer, product) pairs"
    ]
    assert len(found) == 2
    assert any("customer 7 bought product 2" in m for m in found)
    assert any(m.startswith("customer 9, product 5: a verified purchase") for m in found)
