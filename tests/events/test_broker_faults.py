"""Live faults on the broker: latency, error and hang on publish and on consume, bounded.

The faults are switched through the faults engine's store, the same file a
service's ``/admin/faults`` writes (the route's validation is tested at the end);
the relay and the consumer are the library's own, on the real broker.
"""

from __future__ import annotations

import logging
import time

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from shopkit import faults
from shopkit.events.catalog import stream_for
from shopkit.events.consumer import errors_key
from shopkit.events.metrics import EVENTS_CONSUMED
from shopkit.events.outbox import backlog
from shopkit.events.relay import Relay, broker_client
from tests.events import tables
from tests.support.events import drain, sample
from tests.support.identity import Identity, bearer

ORDERS = stream_for("order")

pytestmark = pytest.mark.processes


def last_errors(sessions: sessionmaker[Session]) -> set[str | None]:
    with sessions() as session:
        return set(session.scalars(tables.outbox.select().with_only_columns(
            tables.outbox.c.last_error)))  # fmt: skip


def test_an_error_on_publish_keeps_the_rows_and_they_go_once_it_is_cleared(
    live_faults, relay, emit_orders, sessions, valkey
) -> None:
    emit_orders(3)
    live_faults.replace([{"kind": "error", "dependency": "broker", "operation": "publish"}])
    with pytest.raises(redis.ConnectionError, match="injected error"):
        relay.publish_once()
    assert valkey.exists(ORDERS) == 0
    with sessions() as session:
        assert backlog(session, tables.outbox) == 3
    assert last_errors(sessions) == {"injected error on the broker (publish)"}
    live_faults.replace([])
    assert relay.publish_once() == 3
    assert valkey.xlen(ORDERS) == 3


def test_a_hang_on_publish_lasts_the_clients_timeout_not_the_hang(
    live_faults, db_engine, broker, emit_orders, sessions
) -> None:
    emit_orders(2)
    client = broker_client(broker.url, timeout_s=0.5)
    relay = Relay(db_engine, tables.outbox, client, service="test")
    live_faults.replace([{"kind": "hang", "dependency": "broker", "hang_s": 30}])
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError, match="injected hang"):
        relay.publish_once()
    assert 0.5 <= time.monotonic() - started < 2.0
    live_faults.replace([{"kind": "latency", "dependency": "broker", "latency_ms": 200}])
    started = time.monotonic()
    assert relay.publish_once() == 2  # a latency under the timeout only slows it down
    assert time.monotonic() - started >= 0.2
    client.close()


def test_a_fault_on_consume_leaves_publishing_alone_and_the_reverse(
    live_faults, relay, emit_orders, make_consumer, effects
) -> None:
    emitted = emit_orders(4)
    consumer = make_consumer("audit", [ORDERS])
    live_faults.replace([{"kind": "error", "dependency": "broker", "operation": "consume"}])
    assert relay.publish_once() == 4
    with pytest.raises(redis.ConnectionError, match=r"injected error on the broker \(consume\)"):
        consumer.poll()
    assert effects("audit") == {}
    live_faults.replace([{"kind": "error", "dependency": "broker", "operation": "publish"}])
    drain(consumer, until=lambda: len(effects("audit")) == 4)
    assert effects("audit") == dict.fromkeys(emitted, 1)


def test_an_error_on_acknowledging_is_no_handlers_failure(
    live_faults, relay, emit_orders, make_consumer, effects, valkey, caplog
) -> None:
    """The batch committed; its acknowledgement fails: it is not taken for a handler's
    failure (no applying one by one, nothing counted failed), and the entries, still
    pending, are acknowledged once the broker answers again."""
    emitted = emit_orders(3)
    assert relay.publish_once() == 3
    consumer = make_consumer("acks", [ORDERS])

    def failed() -> float | None:
        return sample(EVENTS_CONSUMED, "shop_events_consumed_total", group="acks", outcome="failed")

    failed_before = failed()
    entries = consumer._read_new()
    assert len(entries) == 3
    live_faults.replace([{"kind": "error", "dependency": "broker", "operation": "consume"}])
    with (
        caplog.at_level(logging.INFO, logger="shopkit.events.consumer"),
        pytest.raises(redis.ConnectionError, match=r"injected error on the broker \(consume\)"),
    ):
        consumer.process(entries)
    assert "applying one by one" not in caplog.text
    assert effects("acks") == dict.fromkeys(emitted, 1)
    assert failed() == failed_before
    assert valkey.hlen(errors_key("acks")) == 0
    assert valkey.xpending(ORDERS, "acks")["pending"] == 3
    live_faults.replace([])
    drain(consumer, until=lambda: valkey.xpending(ORDERS, "acks")["pending"] == 0)
    assert effects("acks") == dict.fromkeys(emitted, 1)
    assert failed() == failed_before
    assert valkey.hlen(errors_key("acks")) == 0


def test_a_running_consumer_rides_out_errors_and_hangs_on_consume(
    live_faults, relay, emit_orders, make_consumer, effects, broker, valkey
) -> None:
    """The consumer's loop backs off through the faults and applies everything once after."""
    consumer = make_consumer("audit", [ORDERS])
    consumer.broker = broker_client(broker.url, timeout_s=0.5)
    live_faults.replace([{"kind": "error", "dependency": "broker", "operation": "consume"}])
    thread, stop = consumer.start_thread()
    try:
        emitted = emit_orders(5)
        relay.publish_once()
        time.sleep(0.5)
        assert effects("audit") == {}, "nothing is read while consuming fails"
        live_faults.replace([{"kind": "hang", "dependency": "broker", "hang_s": 60}])
        time.sleep(1.0)
        assert effects("audit") == {}
        live_faults.replace([])
        deadline = time.monotonic() + 15
        while len(effects("audit")) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert effects("audit") == dict.fromkeys(emitted, 1)
    finally:
        stop.set()
        thread.join(timeout=5)
        consumer.broker.close()
    assert not thread.is_alive(), "the hang held the consumer past its socket timeout"
    assert valkey.xpending(ORDERS, "audit")["pending"] == 0


def test_the_admin_route_takes_broker_faults_and_event_crash_points(
    customers: FlaskClient, identity: Identity
) -> None:
    admin = bearer(identity.admin_token())

    def put(*items: dict[str, object]) -> int:
        answer = customers.put("/admin/faults", json={"faults": list(items)}, headers=admin)
        return answer.status_code

    try:
        assert put({"kind": "hang", "dependency": "broker", "operation": "consume"}) == 200
        assert put({"kind": "error", "dependency": "broker"}) == 200
        crashes = [{"kind": "crash", "after_step": point} for point in faults.EVENT_CRASH_POINTS]
        assert put(*crashes) == 200
        listed = customers.get("/admin/faults", headers=admin).get_json()["faults"]
        assert [fault["after_step"] for fault in listed] == ["publish", "apply", "commit"]
        assert put({"kind": "error", "dependency": "sales", "operation": "publish"}) == 422
        assert put({"kind": "error", "dependency": "broker", "operation": "read"}) == 422
        assert put({"kind": "crash", "after_step": "ack"}) == 422
    finally:  # this process's relays and consumers must not meet the crashes
        assert customers.delete("/admin/faults", headers=admin).status_code == 204
