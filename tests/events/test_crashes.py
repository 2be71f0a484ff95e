"""Crashes at the worst moments, in real processes ended by the faults engine's crash points
(:data:`shopkit.faults.EVENT_CRASH_POINTS`): nothing lost, nothing twice."""

from __future__ import annotations

import pytest

from shopkit.events.catalog import stream_for
from shopkit.events.metrics import EVENTS_CONSUMED
from shopkit.events.outbox import backlog
from tests.events import tables
from tests.support.events import caught_up, drain, pending_by, sample

ORDERS = stream_for("order")

pytestmark = pytest.mark.processes


def test_relay_killed_after_publishing_before_marking(
    run_worker, relay, sessions, emit_orders, make_consumer, effects, valkey
) -> None:
    emitted = emit_orders(5)
    run_worker("relay", "publish")
    assert valkey.xlen(ORDERS) == 5, "the dead relay did publish"
    with sessions() as session:
        assert backlog(session, tables.outbox) == 5, "...but marked nothing"
    assert relay.publish_once() == 5  # the next relay publishes the same events again
    assert valkey.xlen(ORDERS) == 10
    consumer = make_consumer("audit", [ORDERS])
    drain(consumer, until=caught_up(valkey, "audit", [ORDERS]))
    assert effects("audit") == dict.fromkeys(emitted, 1)
    with sessions() as session:
        assert backlog(session, tables.outbox) == 0


@pytest.fixture
def crash_consumer(run_worker, relay, emit_orders):  # type: ignore[no-untyped-def]
    """``crash_consumer(point, group)``: publish five events, kill a consumer at ``point``."""

    def crash(point: str, group: str) -> list[str]:
        emitted = emit_orders(5)
        relay.publish_once()
        run_worker("consume", point, SHOP_TEST_GROUP=group, SHOP_TEST_STREAMS=ORDERS)
        return emitted

    return crash


def test_consumer_killed_before_its_commit(crash_consumer, make_consumer, effects, valkey) -> None:
    emitted = crash_consumer("apply", "audit")
    assert effects("audit") == {}, "the dead consumer's transaction was rolled back"
    assert pending_by(valkey, "audit") == {"doomed": 5}
    survivor = make_consumer("audit", [ORDERS], name="survivor")
    drain(
        survivor,
        until=lambda: len(effects("audit")) == 5 and not pending_by(valkey, "audit"),
    )
    assert effects("audit") == dict.fromkeys(emitted, 1)


def test_consumer_killed_after_its_commit_before_its_ack(
    crash_consumer, make_consumer, effects, valkey
) -> None:
    emitted = crash_consumer("commit", "after")
    assert effects("after") == dict.fromkeys(emitted, 1), "the effects were committed"
    assert pending_by(valkey, "after") == {"doomed": 5}, "...and never acknowledged"
    before = (
        sample(EVENTS_CONSUMED, "shop_events_consumed_total", group="after", outcome="duplicate")
        or 0
    )
    survivor = make_consumer("after", [ORDERS], name="survivor")
    drain(survivor, until=lambda: not pending_by(valkey, "after"))
    assert effects("after") == dict.fromkeys(emitted, 1)
    after = sample(
        EVENTS_CONSUMED, "shop_events_consumed_total", group="after", outcome="duplicate"
    )
    assert after == before + 5
