"""The events' faults (issue 26) over the whole stack: real processes, 16 buyers, an exact audit.

One stack for the module, on a PostgreSQL and a broker of its own: customers,
inventory and sales under gunicorn (customers and sales run their outbox relays
in their workers), the embedded valkey-server, the notifications app and its
worker (the consumer group and the mail sender), and the dev stack's SMTP
sink. Each test breaks the broker, or the events' path through it, while
shoppers buy, and then checks:

- purchases never depend on the broker: every one is answered, 201, within
  its bound, and health checks within theirs;
- money and stock balance exactly, with nothing pending (the fault suite's audit);
- the events' audit: every outbox row was published, every order and wallet
  event applied exactly once by the notifications group, one mail per order
  event recorded, sent and received once.

The library's own crash, poison, duplicate and late-group cases are in
``tests/events``; here are only what the whole stack adds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psutil
import pytest
import requests

from shopkit import faults
from tests.resilience.events import (
    EMITTERS,
    GROUP,
    STREAMS,
    Events,
    EventStack,
    audit_events,
    read_events,
    stream_lengths,
    unpublished,
)
from tests.resilience.harness import (
    HEALTH_BOUND_S,
    Answer,
    Shop,
    Shoppers,
    buy,
    check_answers,
    note,
    probe_health,
    settle_and_audit,
)
from tests.support.broker import restartable
from tests.support.database import broker, mailsink, migrate_as_service_roles, throwaway_server
from tests.support.faults import start_shop
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, SERVICE_SECRET

pytestmark = pytest.mark.processes

#: Concurrent buyers while the broker is killed or frozen.
BUYERS = 16
#: The broker is frozen this long: longer than a purchase's bound.
FREEZE_S = 15.0
#: Each buyer's pause between purchases. The broker is on no purchase's path, so the load
#: only has to be there; what it costs is the mails it makes, which the module waits for
#: (one SMTP send and one transaction each).
PAUSE_S = 1.0


@dataclass
class World:
    """The module's stack, its broker (the latest one started), sink, database and shop."""

    stack: EventStack
    brokers: list[broker.Broker]
    sink: mailsink.MailSink
    database_url: str
    shop: Shop
    tokens: list[str]

    @property
    def broker(self) -> broker.Broker:
        return self.brokers[-1]

    def shoppers(self, threads: int = BUYERS) -> Shoppers:
        products = list(self.shop.products)
        return Shoppers(
            self.stack.url("sales"), self.tokens, products, threads=threads, pause_s=PAUSE_S
        ).start()

    def audit(self) -> tuple[Events, str]:
        """The money and stock audit, then the events' audit; the events, and a summary."""
        money = settle_and_audit(self.stack, self.shop, self.database_url)
        events, summary = audit_events(self.database_url, self.sink)
        return events, f"{money}; {summary}"

    def applied(self) -> set[str]:
        """The events the notifications group applied so far."""
        return set(read_events(self.database_url, self.sink, headers=False).inboxed)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The whole stack on a PostgreSQL, a broker and a mail sink of its own."""
    with (
        throwaway_server("shop-event-fault-pg-", durable=False) as (_server, url),
        restartable("shop-event-fault-valkey-") as brokers,
    ):
        migrate_as_service_roles(url)
        sink = mailsink.start(tmp_path_factory.mktemp("mail"))
        stack = EventStack(
            url, (ADMIN_USERNAME, ADMIN_PASSWORD), SERVICE_SECRET, brokers[0].url, sink.url
        )
        try:
            start_shop(stack)
            stack.start("notifications", workers=1)
            stack.start_worker()
            shop = Shop(stack)
            for _ in range(3):
                shop.product(price="1.00", stock=5000)
            with ThreadPoolExecutor(max_workers=4) as pool:
                tokens = list(pool.map(lambda _: shop.buyer("500.00"), range(BUYERS)))
            yield World(stack, brokers, sink, url, shop, tokens)
        finally:
            stack.close()
            sink.stop()


@pytest.fixture(autouse=True)
def _world_repaired(world: World) -> Iterator[None]:
    """After each test, passed or failed, the shared stack is whole again: no live fault
    left on, a broker running (and no longer stopped), the notifications worker running.
    A failed test then fails alone instead of breaking the ones after it."""
    yield
    for service in ("sales", "notifications"):
        with contextlib.suppress(requests.RequestException):
            requests.delete(
                world.stack.url(service) + "/admin/faults", headers=world.shop.admin, timeout=10
            )
    with contextlib.suppress(ProcessLookupError):
        os.kill(world.broker.process.pid, signal.SIGCONT)
    if not world.broker.alive():
        world.brokers.append(broker.restart(world.broker))
    worker = world.stack.worker
    if worker is None or worker.process is None or worker.process.poll() is not None:
        world.stack.start_worker()


def all_bought(answers: list[Answer]) -> None:
    """No purchase failed: the broker is not on a purchase's path."""
    failed = [a for a in answers if a.status != 201]
    assert not failed, f"{len(failed)} of {len(answers)} purchases failed: {failed[:5]}"


def set_faults(world: World, service: str, faults: list[dict[str, Any]]) -> None:
    answer = requests.put(
        world.stack.url(service) + "/admin/faults",
        json={"faults": faults},
        headers=world.shop.admin,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def backlog(world: World) -> dict[str, int]:
    return {service: len(unpublished(world.database_url, service)) for service in EMITTERS}


def failed_attempts(world: World) -> set[str]:
    """The last errors of the relays' failed attempts on the rows still unpublished."""
    return {row.last_error for service in EMITTERS
            for row in unpublished(world.database_url, service) if row.last_error}  # fmt: skip


def test_the_broker_killed_and_restarted_while_16_buyers_buy(world: World) -> None:
    """kill -9 the broker for 4 s: every purchase succeeds, the outboxes drain after."""
    load = world.shoppers()
    time.sleep(2.0)
    world.broker.kill()
    time.sleep(4.0)
    waiting = backlog(world)
    assert all(waiting.values()), f"no events waited in the outboxes: {waiting}"
    errors = failed_attempts(world)
    assert any("Connection refused" in error for error in errors), errors
    world.brokers.append(broker.restart(world.broker))
    restarted = time.monotonic()
    time.sleep(2.0)
    answers = load.stop()
    worst = check_answers(answers)
    all_bought(answers)
    while any(backlog(world).values()) and time.monotonic() - restarted < 30:
        time.sleep(0.2)
    drained_s = time.monotonic() - restarted
    _, audit = world.audit()
    note(
        f"broker kill -9 for 4 s, then restarted, {BUYERS} buyers",
        answers,
        worst,
        audit,
        f"{sum(waiting.values())} events waited in the outboxes ({sorted(errors)}), drained "
        f"{drained_s:.1f} s after the restart",
    )


def test_the_broker_frozen_for_15_s_under_16_buyers(world: World) -> None:
    """SIGSTOP the broker for 15 s: purchases within 10 s, health within 1 s, nothing lost."""
    load = world.shoppers()
    time.sleep(1.0)
    health: list[float] = []
    until = time.monotonic() + FREEZE_S - 0.5
    probes = [
        threading.Thread(target=probe_health, args=(world.stack.url(s), until, health))
        for s in EMITTERS
    ]
    os.kill(world.broker.process.pid, signal.SIGSTOP)
    try:
        for probe in probes:
            probe.start()
        time.sleep(FREEZE_S)
        waiting = backlog(world)
        errors = failed_attempts(world)
    finally:
        os.kill(world.broker.process.pid, signal.SIGCONT)
    for probe in probes:
        probe.join()
    time.sleep(1.0)
    answers = load.stop()
    worst = check_answers(answers)
    all_bought(answers)
    assert max(health) <= HEALTH_BOUND_S, max(health)
    assert all(waiting.values()), f"the relays were not held up by the frozen broker: {waiting}"
    assert any("Timeout" in error for error in errors), errors
    _, audit = world.audit()
    note(
        f"broker frozen (SIGSTOP) {FREEZE_S:.0f} s, {BUYERS} buyers",
        answers,
        worst,
        audit,
        f"worst sales/customers /healthz or /readyz {max(health) * 1000:.0f} ms; "
        f"{sum(waiting.values())} events waited; the relays' last errors: {sorted(errors)}",
    )


def test_live_broker_faults_and_the_relay_killed_between_publishing_and_marking(
    world: World,
) -> None:
    """A hang on publish (sales) and an error on consume (the notifications worker), switched
    on live; then sales' relay crashes after publishing a batch, before marking it: its
    worker is replaced, another relay takes the lease and publishes the batch again, and
    each event is still applied, and mailed, once."""
    set_faults(world, "sales", [{"kind": "hang", "dependency": "broker",
                                 "operation": "publish", "hang_s": 30}])  # fmt: skip
    set_faults(world, "notifications", [{"kind": "error", "dependency": "broker",
                                         "operation": "consume"}])  # fmt: skip
    time.sleep(1.5)  # a read already waiting when the fault came (it blocks up to 1 s) is over
    applied_before = world.applied()
    load = world.shoppers(threads=4)
    time.sleep(3.0)
    answers = load.stop()
    worst = check_answers(answers)
    all_bought(answers)
    waiting = unpublished(world.database_url, "sales")
    assert waiting, "the hang on publish held nothing back"
    assert {row.last_error for row in waiting if row.attempts} <= {
        "injected hang on the broker (publish)"
    }
    assert world.applied() == applied_before, (
        "the notifications worker consumed through an error on consume"
    )

    master = psutil.Process(world.stack.processes["sales"].process.pid)  # type: ignore[union-attr]
    workers = {worker.pid for worker in master.children()}
    set_faults(world, "sales", [{"kind": "crash", "after_step": "publish"}])
    deadline = time.monotonic() + 15
    while workers <= {worker.pid for worker in master.children()}:
        assert time.monotonic() < deadline, "no relay crashed after publishing"
        time.sleep(0.02)
    assert requests.delete(world.stack.url("sales") + "/admin/faults", headers=world.shop.admin,
                           timeout=10).status_code == 204  # fmt: skip
    sales_log = (world.stack.log_dir / "sales.log").read_text(errors="replace")
    assert "injected crash: exiting after publish" in sales_log
    world.stack.processes["sales"].wait_ready()
    # A few purchases after the crash: a replaced worker's relay starts with its first request.
    after = [buy(world.stack.url("sales"), token, next(iter(world.shop.products)), 1)
             for token in world.tokens[:4]]  # fmt: skip
    all_bought(after)
    assert requests.delete(world.stack.url("notifications") + "/admin/faults",
                           headers=world.shop.admin, timeout=10).status_code == 204  # fmt: skip
    events, audit = world.audit()
    order_stream = stream_lengths(world.broker.url)["events:order"]
    assert order_stream > len(events.order_events), "the crashed relay's batch was not republished"
    note(
        "live: hang on publish (sales), error on consume (notifications); relay crash "
        "after publishing",
        answers + after,
        max(worst, *(a.seconds for a in after)),
        audit,
        f"{len(waiting)} events held back; {order_stream - len(events.order_events)} order "
        "events published twice, applied once",
    )


def test_the_notifications_worker_killed_after_its_commit_before_its_ack(world: World) -> None:
    """The crash point ``commit`` switched on at notifications' ``/admin/faults`` ends its
    worker (a process of its own) after a batch's transaction, before its ack: restarted,
    nothing is missing and no mail goes twice; the dead member's entries wait, pending,
    for the claim (``claim_after_ms``), where their inbox rows make them a no-op."""
    set_faults(world, "notifications", [{"kind": "crash", "after_step": "commit"}])
    product = next(iter(world.shop.products))
    bought = [buy(world.stack.url("sales"), token, product, 1) for token in world.tokens[:2]]
    all_bought(bought)
    crashed = world.stack.worker
    assert crashed is not None and crashed.process is not None
    assert crashed.process.wait(timeout=30) == faults.CRASH_EXIT_STATUS
    client = world.broker.client()
    try:
        left = sum(client.xpending(stream, GROUP)["pending"] for stream in STREAMS)
    finally:
        client.close()
    assert left, "the crashed worker acknowledged its batch"
    # What a supervisor does: the worker starts again (the fault was switched off first).
    assert requests.delete(world.stack.url("notifications") + "/admin/faults",
                           headers=world.shop.admin, timeout=10).status_code == 204  # fmt: skip
    world.stack.start_worker()
    _, audit = world.audit()
    note(
        "notifications worker crashed after its commit, before its ack (live), restarted",
        bought,
        max(a.seconds for a in bought),
        audit,
        f"{left} entries left pending by the dead member",
    )
