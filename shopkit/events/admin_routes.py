"""``/admin/events``: a service's outbox, consumer groups and dead letters, for admins.

Every service that emits or consumes events mounts these routes with one call,
:func:`init_events_admin`, naming its outbox (and the aggregates it emits), its
inbox and its consumer groups with their streams::

    init_events_admin(app, outbox=OUTBOX, emits=("order",))
    init_events_admin(app, inbox=inbox, groups={"notifications": STREAMS})

The console's Events page, the ``seeder events`` commands and the audit read
them (docs/events.rst, "Operating the events"):

- ``GET /admin/events``: the outbox's backlog; for each group, each stream's
  length, the group's lag (entries and seconds) and pending entries, its inbox
  size and dead-letter count; and whether the broker answered;
- ``GET /admin/events/outbox`` and ``GET /admin/events/inbox``: keyset pages of
  the outbox's rows (published or not) and of the event ids a group applied;
- ``GET /admin/events/dead-letters`` and ``POST .../{id}/replay`` or
  ``.../{id}/discard`` (:mod:`shopkit.events.deadletters`).

Admins only. The broker is ``EVENTS_URL``; every call to it is bounded by the
client's socket timeouts. A broker that does not answer is a 503
``dependency_unavailable`` (``dependency: broker``); with no ``EVENTS_URL`` the
broker's parts are a 404 (events are off). The overview answers either way: it
shows the outbox and says why the broker part is missing.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any

import redis
from flask import Flask, current_app
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import Table

from shopkit.auth import ROLE_ADMIN, require_principal, requires
from shopkit.config import Settings
from shopkit.db import get_session
from shopkit.errors import NotFound, ProblemError, ValidationFailed
from shopkit.events import deadletters, inspection
from shopkit.events.catalog import replay_stream, stream_for
from shopkit.events.relay import broker_client
from shopkit.events.streams import GroupLag, StreamInfo, describe, oldest_entry_age_s
from shopkit.service_client import DependencyUnavailable

log = logging.getLogger(__name__)

#: Dead-letter ids are stream entry ids: ``<milliseconds>-<sequence>``.
ENTRY_ID = r"^\d{1,20}-\d{1,20}$"
_ENTRY_ID = re.compile(ENTRY_ID)
MAX_PAGE = 1000
MAX_DEAD_LETTER_PAGE = 200
#: How much of a dead letter's raw event a listing shows.
MAX_EVENT_CHARS = 2000
BROKER_TIMEOUT_S = 2.0
EXTENSION = "shop_events_admin"
#: What can be done to one dead letter: :func:`~shopkit.events.deadletters.replay` or
#: :func:`~shopkit.events.deadletters.discard` (broker, group, dead letter id).
DeadLetterAction = Callable[[redis.Redis, str, str], Any]


@dataclass
class EventsAdmin:
    """What one service has to show: its outbox, its inbox and groups, and the broker."""

    service: str
    events_url: str
    outbox: Table | None = None
    emits: tuple[str, ...] = ()
    inbox: Table | None = None
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    effects: inspection.EffectCounter | None = None
    _broker: redis.Redis | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def broker(self) -> redis.Redis:
        """The broker client (made on first use); 404 when ``EVENTS_URL`` is not set (events
        are off: there are no dead letters to read, and nothing is unavailable)."""
        if not self.events_url:
            raise NotFound("Events are off here: EVENTS_URL is not set, so there is no broker.")
        with self._lock:
            if self._broker is None:
                self._broker = broker_client(self.events_url, timeout_s=BROKER_TIMEOUT_S)
            return self._broker

    def group_streams(self, group: str) -> list[str]:
        """The streams ``group`` reads, its replay stream last."""
        return [*self.groups[group], replay_stream(group)]

    def streams(self) -> list[str]:
        """Every stream this service writes to or reads (replay streams left out)."""
        found = [stream_for(aggregate) for aggregate in self.emits]
        for streams in self.groups.values():
            found += [s for s in streams if s not in found]
        return found


def _admin() -> EventsAdmin:
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


def _group(name: str | None) -> str:
    """The group asked for, or the service's only one; 404 for a group it does not run."""
    groups = _admin().groups
    if name is None:
        if len(groups) == 1:
            return next(iter(groups))
        if not groups:
            raise NotFound("This service runs no consumer group.")
        raise ValidationFailed({"group": [f"Give one of: {', '.join(sorted(groups))}."]})
    if name not in groups:
        raise NotFound(f"This service runs no consumer group {name!r}.")
    return name


# -- schemas ---------------------------------------------------------------------------------


class OutboxSummarySchema(Schema):
    """The outbox right now."""

    total = fields.Integer(metadata={"description": "Rows, published or not."})
    unpublished = fields.Integer(metadata={"description": "Committed rows not yet published."})
    failing = fields.Integer(metadata={"description": "Unpublished rows that failed before."})
    oldest_unpublished_age_s = fields.Float(allow_none=True)


class StreamGroupSchema(Schema):
    """One group on one stream."""

    group = fields.String()
    consumers = fields.Integer()
    pending = fields.Integer(metadata={"description": "Delivered, not yet acknowledged."})
    lag_entries = fields.Integer(metadata={"description": "Not yet delivered to the group."})
    lag_seconds = fields.Float(metadata={"description": "Age of the oldest unfinished entry."})


class StreamSchema(Schema):
    """One stream: its length and every group reading it."""

    stream = fields.String()
    length = fields.Integer()
    groups = fields.List(fields.Nested(StreamGroupSchema))


class GroupLagSchema(Schema):
    """This service's group on one stream (not created yet: everything is lag)."""

    stream = fields.String()
    length = fields.Integer()
    created = fields.Boolean(metadata={"description": "Whether the group exists on it yet."})
    consumers = fields.Integer()
    pending = fields.Integer()
    lag_entries = fields.Integer()
    lag_seconds = fields.Float()


class GroupSchema(Schema):
    """One consumer group this service runs."""

    group = fields.String()
    streams = fields.List(fields.String())
    inbox = fields.Integer(metadata={"description": "Events the group applied."})
    dead_letters = fields.Integer(allow_none=True)
    lag = fields.List(fields.Nested(GroupLagSchema), allow_none=True)


class BrokerSchema(Schema):
    """Whether the service has a broker (``EVENTS_URL``) and whether it answered."""

    configured = fields.Boolean()
    available = fields.Boolean()
    detail = fields.String(allow_none=True)


class EventsOverviewSchema(Schema):
    """A service's events right now."""

    service = fields.String()
    outbox = fields.Nested(OutboxSummarySchema, allow_none=True)
    streams = fields.List(fields.Nested(StreamSchema), allow_none=True)
    groups = fields.List(fields.Nested(GroupSchema))
    broker = fields.Nested(BrokerSchema)


class KeysetArgsSchema(Schema):
    """``limit`` items after ``after``."""

    limit = fields.Integer(load_default=500, validate=validate.Range(min=1, max=MAX_PAGE))


class OutboxArgsSchema(KeysetArgsSchema):
    """A page of the outbox."""

    after = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**63 - 1))


class OutboxRowSchema(Schema):
    """One outbox row."""

    id = fields.Integer()
    event_id = fields.UUID()
    type = fields.String()
    aggregate = fields.String()
    aggregate_id = fields.String()
    sequence = fields.Integer()
    created_at = fields.DateTime()
    published_at = fields.DateTime(allow_none=True)
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)


class OutboxPageSchema(Schema):
    """Outbox rows in id order; ``next_after`` reads the next page (``null``: the last)."""

    items = fields.List(fields.Nested(OutboxRowSchema))
    next_after = fields.Integer(allow_none=True)


class GroupArgsSchema(Schema):
    """Which consumer group (optional when the service runs one)."""

    group = fields.String(validate=validate.Length(min=1, max=100))


class InboxArgsSchema(GroupArgsSchema, KeysetArgsSchema):
    """A page of a group's inbox."""

    after = fields.UUID()


class InboxRowSchema(Schema):
    """One event the group applied, with the service's own effects of it (if it counts them)."""

    event_id = fields.UUID()
    type = fields.String()
    stream = fields.String()
    applied_at = fields.DateTime()
    effects = fields.Dict(keys=fields.String(), values=fields.Integer())


class InboxPageSchema(Schema):
    """Applied events by event id; ``next_after`` reads the next page (``null``: the last)."""

    group = fields.String()
    items = fields.List(fields.Nested(InboxRowSchema))
    next_after = fields.UUID(allow_none=True)


class DeadLetterArgsSchema(GroupArgsSchema):
    """A page of a group's dead letters, oldest first."""

    after = fields.String(validate=validate.Regexp(ENTRY_ID))
    limit = fields.Integer(
        load_default=100, validate=validate.Range(min=1, max=MAX_DEAD_LETTER_PAGE)
    )


class DeadLetterSchema(Schema):
    """One event the group gave up on."""

    id = fields.String(metadata={"description": "Its id among the group's dead letters."})
    group = fields.String()
    stream = fields.String(metadata={"description": "The stream it came from."})
    entry_id = fields.String(metadata={"description": "Its entry id there."})
    event_id = fields.String(allow_none=True)
    type = fields.String(allow_none=True)
    error = fields.String()
    attempts = fields.Integer()
    failed_at = fields.DateTime()
    event = fields.String(metadata={"description": "The raw event (cut at 2,000 characters)."})


class DeadLetterPageSchema(Schema):
    """Dead letters, oldest first; ``next_after`` reads the next page (``null``: the last)."""

    group = fields.String()
    total = fields.Integer()
    items = fields.List(fields.Nested(DeadLetterSchema))
    next_after = fields.String(allow_none=True)


class ReplayedSchema(Schema):
    """A dead letter handed back to its group."""

    group = fields.String()
    id = fields.String()
    replay_id = fields.String(metadata={"description": "Its entry in the group's replay stream."})


class DiscardedSchema(Schema):
    """A dead letter deleted for good."""

    group = fields.String()
    discarded = fields.Nested(DeadLetterSchema)


# -- the routes ------------------------------------------------------------------------------

events_admin_blp = Blueprint(
    "events_admin",
    __name__,
    url_prefix="/admin/events",
    description="This service's events: outbox, consumer groups and dead letters (admin).",
)


@events_admin_blp.route("", methods=["GET"])
@events_admin_blp.response(200, EventsOverviewSchema)
@requires(ROLE_ADMIN)
def overview() -> ResponseReturnValue:
    """This service's outbox backlog, and each consumer group's lag, inbox and dead letters."""
    admin = _admin()
    session = get_session()
    body: dict[str, Any] = {"service": admin.service, "outbox": None, "streams": None}
    if admin.outbox is not None:
        body["outbox"] = inspection.outbox_summary(session, admin.outbox)
    groups: dict[str, dict[str, Any]] = {
        name: {
            "group": name,
            "streams": list(streams),
            "inbox": inspection.inbox_size(session, admin.inbox, name)
            if admin.inbox is not None
            else 0,
            "dead_letters": None,
            "lag": None,
        }
        for name, streams in admin.groups.items()
    }
    body["groups"] = list(groups.values())
    try:
        broker = admin.broker()
        wanted = [*admin.streams(), *(s for name in groups for s in admin.group_streams(name))]
        infos = {stream: describe(broker, stream) for stream in dict.fromkeys(wanted)}
        body["streams"] = [infos[stream] for stream in admin.streams()]
        for name, group in groups.items():
            group["lag"] = [_group_lag(broker, infos[s], name) for s in admin.group_streams(name)]
            group["dead_letters"] = deadletters.count_dead_letters(broker, name)
    except (redis.RedisError, ProblemError) as error:
        detail = error.detail if isinstance(error, ProblemError) else f"The broker: {error}"
        body["broker"] = {"configured": bool(admin.events_url), "available": False,
                          "detail": detail}  # fmt: skip
    else:
        body["broker"] = {"configured": True, "available": True, "detail": None}
    return body


def _group_lag(broker: redis.Redis, info: StreamInfo, group: str) -> dict[str, Any]:
    """``group`` on one stream; a group not created yet will start at its first entry."""
    lag = info.lag_of(group)
    created = lag is not None
    if lag is None:
        age = oldest_entry_age_s(broker, info.stream) if info.length else 0.0
        lag = GroupLag(group, info.stream, 0, 0, info.length, age)
    return {**asdict(lag), "length": info.length, "created": created}


def _next_after(items: Sequence[Any], limit: int, key: Callable[[Any], Any]) -> Any:
    """A keyset page's ``next_after``: the last item's key when the page is full, else
    ``None`` (it was the last page)."""
    return key(items[-1]) if len(items) == limit else None


@events_admin_blp.route("/outbox", methods=["GET"])
@events_admin_blp.response(200, OutboxPageSchema)
@events_admin_blp.alt_response(404, description="This service has no outbox.")
@requires(ROLE_ADMIN)
@events_admin_blp.arguments(OutboxArgsSchema(), location="query")
def outbox_page(args: dict[str, Any]) -> ResponseReturnValue:
    """The outbox's rows after id ``after``, in id order: which events were published, when."""
    admin = _admin()
    if admin.outbox is None:
        raise NotFound("This service has no outbox.")
    rows = inspection.outbox_rows(
        get_session(), admin.outbox, after=args["after"], limit=args["limit"]
    )
    return {"items": rows, "next_after": _next_after(rows, args["limit"], itemgetter("id"))}


@events_admin_blp.route("/inbox", methods=["GET"])
@events_admin_blp.response(200, InboxPageSchema)
@events_admin_blp.alt_response(404, description="This service runs no such group.")
@requires(ROLE_ADMIN)
@events_admin_blp.arguments(InboxArgsSchema(), location="query")
def inbox_page(args: dict[str, Any]) -> ResponseReturnValue:
    """The events a group applied, by event id after ``after`` (with their effects here)."""
    admin = _admin()
    group = _group(args.get("group"))
    assert admin.inbox is not None  # a service with groups has an inbox (init_events_admin)
    after: uuid.UUID | None = args.get("after")
    rows = inspection.inbox_rows(get_session(), admin.inbox, group, after=after,
                                 limit=args["limit"], effects=admin.effects)  # fmt: skip
    last = _next_after(rows, args["limit"], itemgetter("event_id"))
    return {"group": group, "items": rows, "next_after": last}


@events_admin_blp.route("/dead-letters", methods=["GET"])
@events_admin_blp.response(200, DeadLetterPageSchema)
@events_admin_blp.alt_response(404, description="No such group here, or events are off.")
@events_admin_blp.alt_response(503, description="The broker does not answer.")
@requires(ROLE_ADMIN)
@events_admin_blp.arguments(DeadLetterArgsSchema(), location="query")
def list_dead_letters(args: dict[str, Any]) -> ResponseReturnValue:
    """A group's dead letters, oldest first: the event, its last error and its attempts."""
    group = _group(args.get("group"))
    broker = _admin().broker()
    try:
        letters = deadletters.list_dead_letters(
            broker, group, after=args.get("after", "-"), count=args["limit"]
        )
        total = deadletters.count_dead_letters(broker, group)
    except redis.RedisError as error:
        raise DependencyUnavailable("broker", f"The broker did not answer: {error}") from None
    last = _next_after(letters, args["limit"], attrgetter("id"))
    return {"group": group, "total": total, "items": [_letter(x) for x in letters],
            "next_after": last}  # fmt: skip


def _letter(letter: deadletters.DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "group": letter.group,
        "stream": letter.stream,
        "entry_id": letter.entry_id,
        "event_id": letter.event_id,
        "type": letter.type,
        "error": letter.error,
        "attempts": letter.attempts,
        "failed_at": datetime.fromtimestamp(letter.failed_at, UTC),
        "event": letter.event.decode(errors="replace")[:MAX_EVENT_CHARS],
    }


def _act(dead_id: str, args: Mapping[str, Any], action: DeadLetterAction) -> tuple[str, Any]:
    """Run ``action`` (:func:`~shopkit.events.deadletters.replay` or ``discard``) on one dead
    letter; 404 if there is no such letter."""
    group = _group(args.get("group"))
    broker = _admin().broker()
    try:
        if not _ENTRY_ID.match(dead_id):
            raise deadletters.DeadLetterNotFound(dead_id)
        done = action(broker, group, dead_id)
    except deadletters.DeadLetterNotFound:
        raise NotFound(f"Group {group!r} has no dead letter {dead_id!r}.") from None
    except redis.RedisError as error:
        raise DependencyUnavailable("broker", f"The broker did not answer: {error}") from None
    log.warning("dead letter %s of group %s: %s by %s", dead_id, group, action.__name__,
                require_principal().subject)  # fmt: skip
    return group, done


@events_admin_blp.route("/dead-letters/<dead_id>/replay", methods=["POST"])
@events_admin_blp.response(200, ReplayedSchema)
@events_admin_blp.alt_response(404, description="No such group or dead letter; or events off.")
@events_admin_blp.alt_response(503, description="The broker does not answer.")
@requires(ROLE_ADMIN)
@events_admin_blp.arguments(GroupArgsSchema(), location="query")
def replay_dead_letter(args: dict[str, Any], dead_id: str) -> ResponseReturnValue:
    """Hand a dead letter back to its group (only it); its inbox keeps the effect single."""
    group, replay_id = _act(dead_id, args, deadletters.replay)
    return {"group": group, "id": dead_id, "replay_id": replay_id}


@events_admin_blp.route("/dead-letters/<dead_id>/discard", methods=["POST"])
@events_admin_blp.response(200, DiscardedSchema)
@events_admin_blp.alt_response(404, description="No such group or dead letter; or events off.")
@events_admin_blp.alt_response(503, description="The broker does not answer.")
@requires(ROLE_ADMIN)
@events_admin_blp.arguments(GroupArgsSchema(), location="query")
def discard_dead_letter(args: dict[str, Any], dead_id: str) -> ResponseReturnValue:
    """Delete a dead letter for good; what it was."""
    group, letter = _act(dead_id, args, deadletters.discard)
    return {"group": group, "discarded": _letter(letter)}


def init_events_admin(
    app: Flask,
    *,
    outbox: Table | None = None,
    emits: Sequence[str] = (),
    inbox: Table | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    effects: inspection.EffectCounter | None = None,
) -> EventsAdmin:
    """Mount ``/admin/events`` on ``app`` (a :func:`shopkit.app.create_service_app` app).

    ``outbox`` is the service's outbox and ``emits`` the aggregates it writes there
    (``("order",)``); ``inbox`` its inbox and ``groups`` each consumer group it runs
    with the streams it reads; ``effects`` counts the service's own effects per event
    id, for the audit. Give whichever the service has.
    """
    if groups and inbox is None:
        raise ValueError("a service that runs consumer groups has an inbox: give it")
    settings: Settings = app.config["SHOP_SETTINGS"]
    admin = EventsAdmin(
        service=settings.service_name,
        events_url=settings.events_url,
        outbox=outbox,
        emits=tuple(emits),
        inbox=inbox,
        groups={name: tuple(streams) for name, streams in (groups or {}).items()},
        effects=effects,
    )
    app.extensions[EXTENSION] = admin
    app.extensions["shop_api"].register_blueprint(events_admin_blp)
    return admin
