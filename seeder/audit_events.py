"""The audit's event checks: nothing lost, nothing applied twice, event-carried state right.

The guarantees are those of docs/events.rst. The seeder reads, through each
service's ``/admin/events`` (:mod:`shopkit.events.admin_routes`):

* every outbox row (published or not) of each service that emits events;
* for each consumer group, the streams it reads, the ids of the events it
  applied (its inbox, with the service's own effects of each) and its dead
  letters;

and, for the state events carry to other services, reviews' ``GET /reviews``
(every status) and ``GET /admin/verified-purchases``, beside the orders and
products the sale audit (:mod:`seeder.audit`) already read. It checks:

* every outbox row is published;
* every published event is applied by each group that reads its stream,
  unless it is one of the group's dead letters, which are a check of their own;
* each applied event made its effect once: one notification per order and
  wallet event, one mail per order event (the notifications service counts
  them per event id), and each of those mails was sent;
* inventory's rating of each product (average and count) equals its approved
  reviews';
* reviews' verified purchases are exactly the (customer, product) pairs of
  the paid orders.

In flight, not judged: outbox rows and events younger than ``margin_s`` (the
relay and the consumers' normal delay), and products or orders changed within
that margin. A service whose events are off (no ``EVENTS_URL``), not running,
or without the endpoint a check needs is named in the report's notes and its
checks are left out, so the sale audit still runs on a shop without events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from seeder import events
from seeder.check import Check
from seeder.client import Login, Services, ServiceUnreachable
from shopkit.events.catalog import UnknownEventType, event_type, stream_for
from shopkit.events.consumer import ConsumerSettings
from shopkit.registry import SERVICE_NAMES

#: What the relay and the consumers may still be doing: events younger than this are in flight.
DEFAULT_MARGIN_S = 30.0
#: Orders whose buyer bought each of their products.
PAID = ("completed", "shipped", "delivered")
#: Orders that were paid and refunded: their pairs may or may not count as purchases.
REFUNDED = ("cancelled",)
PATH = events.PATH
RATING_TOLERANCE = Decimal("0.005")
Group = tuple[str, str]


@dataclass
class EventsView:
    """What the audit read about events; a service or endpoint it could not read is a note."""

    #: Each service with events on: its ``GET /admin/events``.
    overviews: dict[str, dict[str, Any]] = field(default_factory=dict)
    outboxes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    inboxes: dict[Group, list[dict[str, Any]]] = field(default_factory=dict)
    dead_letters: dict[Group, list[dict[str, Any]]] = field(default_factory=dict)
    #: Every review in every status (``None``: reviews not read).
    reviews: list[dict[str, Any]] | None = None
    #: Reviews' verified purchases (``None``: not read).
    verified: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)

    def groups(self) -> Iterator[tuple[str, str, list[str]]]:
        """``(service, group, streams)`` of every consumer group read."""
        for service, overview in self.overviews.items():
            for group in overview.get("groups") or []:
                yield service, str(group["group"]), list(group.get("streams") or [])

    def consumes(self, stream: str) -> Iterator[str]:
        """The services whose groups read ``stream``."""
        for service, _group, streams in self.groups():
            if stream in streams:
                yield service


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- reading ---------------------------------------------------------------------------------


class EventsReader:
    """Reads :class:`EventsView` through the services' admin endpoints."""

    def __init__(self, services: Services, admin: Login) -> None:
        self.services = services
        self.admin = admin

    def _keyset(
        self, service: str, path: str, params: dict[str, Any], limit: int = 1000
    ) -> list[dict[str, Any]]:
        return self.admin.keyset(self.services.api(service), path, params, limit)

    def read(self) -> EventsView:
        """Everything the event checks need (dead letters and inboxes before the outboxes)."""
        view = EventsView()
        for service in SERVICE_NAMES:
            overview = self._overview(service, view)
            if overview is not None:
                view.overviews[service] = overview
        for service, group, _streams in list(view.groups()):
            view.dead_letters[(service, group)] = self._keyset(
                service, f"{PATH}/dead-letters", {"group": group}, limit=200
            )
            view.inboxes[(service, group)] = self._keyset(
                service, f"{PATH}/inbox", {"group": group}
            )
        for service, overview in view.overviews.items():
            if overview.get("outbox") is not None:
                view.outboxes[service] = self._keyset(service, f"{PATH}/outbox", {})
        if _carried(view, "inventory", "reviews", "ratings"):
            view.reviews = self._all_reviews()
        if _carried(view, "reviews", "sales", "verified purchases"):
            view.verified = self._verified(view)
        return view

    def _overview(self, service: str, view: EventsView) -> dict[str, Any] | None:
        try:
            found = events.overview(self.services, self.admin, service)
        except ServiceUnreachable as exc:
            view.notes.append(f"{exc} Its event checks are left out.")
            return None
        if found is None:
            return None  # it neither emits nor consumes events
        if not (found.get("broker") or {}).get("configured", True):
            view.notes.append(
                f"{service}: events are off (no EVENTS_URL); its checks are left out."
            )
            return None
        return found

    def _all_reviews(self) -> list[dict[str, Any]]:
        """Every review, in every status."""
        api, token = self.services.reviews, self.admin.token()
        return [
            review
            for status in ("pending", "flagged", "approved", "rejected")
            for review in api.pages("/reviews", {"status": status}, token=token)
        ]

    def _verified(self, view: EventsView) -> list[dict[str, Any]] | None:
        """Reviews' verified purchases (``None``, noted, where reviews does not serve them)."""
        api, token = self.services.reviews, self.admin.token()
        reply = self.admin.call(api, "GET", "/admin/verified-purchases", params={"page_size": 1})
        if reply.status in (404, 405):
            view.notes.append("reviews has no /admin/verified-purchases: that check is left out.")
            return None
        return list(api.pages("/admin/verified-purchases", token=token))


def _carried(view: EventsView, consumer: str, source: str, what: str) -> bool:
    """Whether ``consumer`` keeps state from ``source``'s events here (both have events on:
    the source an outbox, the consumer a group); noted when not."""
    consumes = bool((view.overviews.get(consumer) or {}).get("groups"))
    emits = (view.overviews.get(source) or {}).get("outbox") is not None
    if not (consumes and emits):
        view.notes.append(
            f"{what}: {consumer} does not consume {source}'s events here; that check is left out."
        )
    return consumes and emits


# -- checking --------------------------------------------------------------------------------


#: The effects each consuming service's group makes of one event, by the event's type.
EXPECTED_EFFECTS: dict[str, Callable[[str], dict[str, int]]] = {
    "notifications": lambda name: {
        "notifications": 1 if _aggregate(name) in ("order", "wallet") else 0,
        "mails": 1 if _aggregate(name) == "order" else 0,
    },
}


def _aggregate(name: str) -> str:
    """The aggregate of the catalogued event type ``name`` (``""`` for one not catalogued)."""
    try:
        return event_type(name).aggregate
    except UnknownEventType:
        return ""


def check_events(
    view: EventsView,
    started: datetime,
    *,
    sales: dict[str, dict[str, Any]],
    products: list[dict[str, Any]],
    margin_s: float = DEFAULT_MARGIN_S,
) -> list[Check]:
    """The event checks over data already read (see the module documentation)."""
    cutoff = started - timedelta(seconds=margin_s)
    published = {
        str(row["event_id"]): (service, row)
        for service, rows in view.outboxes.items()
        for row in rows
        if row.get("published_at")
    }
    checks = [_unpublished(view, cutoff, margin_s)]
    if view.overviews and any(True for _ in view.groups()):
        forgotten = started - timedelta(seconds=ConsumerSettings().inbox_keep_s)
        checks += [
            _applied(view, published, cutoff, forgotten),
            _dead_letters(view),
            *_effects(view, cutoff),
        ]
    if view.reviews is not None and products and "rating" in products[0]:
        checks.append(_ratings(view.reviews, products, cutoff))
    elif view.reviews is not None:
        view.notes.append("inventory's products carry no rating: that check is left out.")
    if view.verified is not None:
        checks.append(_verified(view.verified, sales, cutoff))
    return checks


def _unpublished(view: EventsView, cutoff: datetime, margin_s: float) -> Check:
    check = Check(f"every outbox row is published (rows younger than {margin_s:g} s in flight)")
    for service, rows in view.outboxes.items():
        check.checked += len(rows)
        for row in rows:
            created = _when(row.get("created_at"))
            if row.get("published_at") or (created is not None and created > cutoff):
                continue
            error = f": {row['last_error']}" if row.get("last_error") else ""
            check.violations.append(
                f"{service}: {row['type']} {row['event_id']} unpublished since "
                f"{row.get('created_at')}, {row.get('attempts', 0)} attempts{error}"
            )
    return check


def _applied(
    view: EventsView,
    published: dict[str, tuple[str, dict[str, Any]]],
    cutoff: datetime,
    forgotten: datetime,
) -> Check:
    """Each published event is in the inbox (or the dead letters) of each group reading it.

    Not judged: events published before ``forgotten``, whose inbox rows the groups have
    pruned (``inbox_keep_s``); an outbox keeps each aggregate's newest row for ever.
    """
    check = Check("every published event is applied by each group that reads its stream")
    for service, group, streams in view.groups():
        applied = {str(row["event_id"]) for row in view.inboxes.get((service, group), [])}
        dead = {str(x.get("event_id")) for x in view.dead_letters.get((service, group), [])}
        for event_id, (emitter, row) in published.items():
            if stream_for(str(row["aggregate"])) not in streams:
                continue
            moment = _when(row.get("published_at"))
            if moment is not None and moment > cutoff:
                continue  # the group may not have read it yet
            if moment is not None and moment < forgotten:
                continue  # applied long ago; its inbox row is pruned
            check.checked += 1
            if event_id not in applied and event_id not in dead:
                check.violations.append(
                    f"{service}/{group}: {row['type']} {event_id} from {emitter}, published "
                    f"{row.get('published_at')}, never applied"
                )
    return check


def _dead_letters(view: EventsView) -> Check:
    check = Check("no dead letters (events a group gave up on)")
    for (service, group), letters in view.dead_letters.items():
        check.checked += len(letters)
        for letter in letters:
            check.violations.append(
                f"{service}/{group}: dead letter {letter['id']} ({letter.get('type') or '?'} "
                f"{letter.get('event_id') or 'unreadable'}, {letter.get('attempts')} attempts): "
                f"{letter.get('error')}"
            )
    return check


def _effects(view: EventsView, cutoff: datetime) -> Iterable[Check]:
    """Each applied event's effects, once (for the services that count theirs)."""
    once = Check("each applied event made its effects exactly once (notifications, mails)")
    sent = Check("every order event's mail was sent")
    for (service, group), rows in view.inboxes.items():
        expected = EXPECTED_EFFECTS.get(service)
        if expected is None:
            continue
        for row in rows:
            once.checked += 1
            wanted, made = expected(str(row["type"])), row.get("effects") or {}
            for effect, count in wanted.items():
                if int(made.get(effect, 0)) != count:
                    once.violations.append(
                        f"{service}/{group}: {row['type']} {row['event_id']} made "
                        f"{made.get(effect, 0)} {effect}, not {count}"
                    )
            if wanted.get("mails"):
                sent.checked += 1
                applied = _when(row.get("applied_at"))
                if int(made.get("mails_unsent", 0)) and applied is not None and applied < cutoff:
                    sent.violations.append(
                        f"{service}: the mail of {row['type']} {row['event_id']} (applied "
                        f"{row.get('applied_at')}) is not sent"
                    )
    return (once, sent)


def _ratings(
    reviews: list[dict[str, Any]], products: list[dict[str, Any]], cutoff: datetime
) -> Check:
    """Inventory's rating of each product against its approved reviews."""
    check = Check("inventory's ratings equal the approved reviews' average and count")
    ratings: dict[int, list[int]] = defaultdict(list)
    changing: set[int] = set()
    for review in reviews:
        product = int(review["product_id"])
        if review.get("status") == "approved":
            ratings[product].append(int(review["rating"]))
        changed = _when(review.get("updated_at"))
        if changed is not None and changed > cutoff:
            changing.add(product)
    for item in products:
        product = int(item["id"])
        if product in changing:
            continue  # a review of it changed within the margin: the event may be on its way
        check.checked += 1
        truth = ratings.get(product, [])
        rating = item.get("rating") or {}
        count = int(rating.get("count") or 0)
        average = rating.get("average")
        exact = Decimal(sum(truth)) / len(truth) if truth else None
        if (
            count != len(truth)
            or (average is None) != (exact is None)
            or (exact is not None and abs(Decimal(str(average)) - exact) > RATING_TOLERANCE)
        ):
            shown = f"{exact:.2f}" if exact is not None else "none"
            check.violations.append(
                f"product {product}: rated {average} from {count} reviews, "
                f"{len(truth)} approved reviews average {shown}"
            )
    return check


def _verified(
    verified: list[dict[str, Any]], sales: dict[str, dict[str, Any]], cutoff: datetime
) -> Check:
    """Reviews' verified purchases against the paid orders' (customer, product) pairs.

    A pair bought only in orders since cancelled may be either: whether a refunded
    purchase still lets its buyer review is reviews' rule, not the sale's.
    """
    check = Check("reviews' verified purchases equal the paid orders' (customer, product) pairs")
    paid: dict[tuple[int, int], str] = {}
    refunded: set[tuple[int, int]] = set()
    changing: set[tuple[int, int]] = set()
    for sale_id, sale in sales.items():
        pairs = {(int(sale["customer_id"]), int(item["product_id"]))
                 for item in sale.get("items") or []}  # fmt: skip
        updated = _when(sale.get("updated_at"))
        if updated is not None and updated > cutoff:
            changing |= pairs
        if sale.get("status") in PAID:
            paid.update(dict.fromkeys(pairs, sale_id))
        elif sale.get("status") in REFUNDED:
            refunded |= pairs
    known = {(int(v["customer_id"]), int(v["product_id"])): v for v in verified}
    for pair in sorted(set(paid) | set(known)):
        if pair in changing:
            continue
        check.checked += 1
        if pair in paid and pair not in known:
            check.violations.append(
                f"customer {pair[0]} bought product {pair[1]} (order {paid[pair]}), "
                "not a verified purchase"
            )
        elif pair in known and pair not in paid and pair not in refunded:
            check.violations.append(
                f"customer {pair[0]}, product {pair[1]}: a verified purchase (order "
                f"{known[pair].get('order_id')}) without a paid order"
            )
    return check
