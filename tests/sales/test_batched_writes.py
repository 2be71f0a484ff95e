"""Group commit of sales' own writes: concurrent purchases' orders are recorded by one
statement and one commit, and their outcomes written by one more, each sale owned by its
lease (not a row lock) while it is driven. Real PostgreSQL throughout; real customers and
inventory processes where the saga calls them."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import create_engine, text

from sales_service.batching import Batcher
from sales_service.models import COMPLETED, FAILED, PENDING
from sales_service.saga import SagaIncomplete
from sales_service.saga_run import NewSale, SagaRun
from sales_service.saga_store import Recording, existing_sale, record_sales, save_leased
from shopkit.auth import ROLE_CUSTOMER, Principal
from shopkit.db import Database
from shopkit.errors import DatabaseUnavailable, ProblemError
from tests.support.database import service_role_url
from tests.support.identity import Identity
from tests.support.invariants import check_invariants
from tests.support.live import LiveStack
from tests.support.sales import (
    GATHER,
    Shop,
    all_at_once,
    concurrently,
    counted,
    customer_principals,
    post_sale,
    purchase_call,
    recover,
    start_batching_sales,
)


def customer(number: int) -> Principal:
    return Principal(subject=f"buyer{number}", role=ROLE_CUSTOMER, customer_id=number)


def order(number: int, key: str | None = None, lines: tuple[tuple[int, int], ...] = ((7, 1),)):
    request = NewSale(lines, idempotency_key=key, fingerprint=f"fp-{lines}" if key else None)
    return Recording(customer(number), request, uuid.uuid4())


def rows(database_url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params))
    finally:
        engine.dispose()


def test_a_batch_records_every_order_but_one_whose_key_was_used(
    sales_db: Database, database_url: str
) -> None:
    """A key already used leaves that order out (its request gets the existing sale); its
    neighbours, one of them with the same key for another customer, are recorded."""
    first = order(1, key="k-1")
    with sales_db.session() as session:
        [earlier] = record_sales(session, [first])
    assert earlier is not None and earlier.lease_until is not None
    again, other, keyless = (
        order(1, key="k-1"),
        order(2, key="k-1"),
        order(3, lines=((5, 2), (6, 1))),
    )
    with sales_db.session() as session:
        recorded = record_sales(session, [again, other, keyless])
    assert recorded[0] is None
    assert recorded[1] is not None and recorded[1].id == other.sale_id
    assert recorded[2] is not None and [(x.product_id, x.quantity) for x in recorded[2].lines] == [
        (5, 2),
        (6, 1),
    ]
    with sales_db.session() as session:
        found = existing_sale(session, 1, again.request)
    assert found.id == first.sale_id
    stored = rows(database_url, "SELECT id, status, lease_until > now() AS leased FROM sales.sales")
    assert {(r.id, r.status, r.leased) for r in stored} == {
        (first.sale_id, PENDING, True),
        (other.sale_id, PENDING, True),
        (keyless.sale_id, PENDING, True),
    }
    lines = rows(
        database_url,
        "SELECT product_id, position, quantity FROM sales.sale_lines WHERE sale_id = :s "
        "ORDER BY position",
        s=keyless.sale_id,
    )
    assert [tuple(r) for r in lines] == [(5, 0, 2), (6, 1, 1)]
    # A different request under the used key is refused, as on the single path.
    with sales_db.session() as session, pytest.raises(ProblemError) as refused:
        existing_sale(session, 1, NewSale(((9, 9),), idempotency_key="k-1", fingerprint="other"))
    assert refused.value.code == "idempotency_key_reused"


def test_the_same_key_twice_in_one_batch_records_one_sale(
    sales_db: Database, database_url: str
) -> None:
    one, two, neighbour = order(4, key="twice"), order(4, key="twice"), order(5, key="twice")
    with sales_db.session() as session:
        recorded = record_sales(session, [one, two, neighbour])
    assert recorded[0] is not None and recorded[1] is None and recorded[2] is not None
    keyed = rows(
        database_url,
        "SELECT customer_id, count(*) AS n FROM sales.sales GROUP BY customer_id ORDER BY 1",
    )
    assert [tuple(r) for r in keyed] == [(4, 1), (5, 1)]
    assert len(rows(database_url, "SELECT 1 FROM sales.sale_lines")) == 2


def _completed_run(sale: Any) -> SagaRun:
    run = SagaRun(sale)
    sale.attempts += 1
    run.price({"items": [{"product_id": 7, "unit_price": "2.50", "name": "Pear"}]})
    run.log("reserve", "ok", total=str(sale.total))
    run.log("debit", "ok", amount=str(sale.total))
    run.finish(COMPLETED)
    return run


def test_a_batch_of_saves_never_overwrites_a_sale_someone_else_settled(
    sales_db: Database, database_url: str
) -> None:
    """Three drives saved together; one sale's lease ran out meanwhile and someone else
    (recovery) settled it: that one keeps their outcome, the others are written."""
    orders = [order(n) for n in (11, 12, 13)]
    with sales_db.session() as session:
        sales = record_sales(session, orders)
    runs = [_completed_run(sale) for sale in sales]
    taken = orders[1].sale_id
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE sales.sales SET status = 'failed', failure_code = 'insufficient_stock', "
                "lease_until = NULL WHERE id = :id"
            ),
            {"id": taken},
        )
    engine.dispose()
    with sales_db.session() as session:
        assert save_leased(session, runs) == [True, False, True]
    stored = {
        r.id: r
        for r in rows(database_url, "SELECT id, status, total, lease_until FROM sales.sales")
    }
    assert stored[taken].status == FAILED and stored[taken].total is None
    for written in (orders[0].sale_id, orders[2].sale_id):
        assert (stored[written].status, stored[written].total) == (COMPLETED, Decimal("2.50"))
        assert stored[written].lease_until is None
    steps = rows(database_url, "SELECT sale_id, step FROM sales.saga_steps ORDER BY id")
    assert taken not in {r.sale_id for r in steps}
    assert [r.step for r in steps if r.sale_id == orders[0].sale_id] == [
        "reserve",
        "debit",
        "complete",
    ]
    priced = rows(database_url, "SELECT sale_id, unit_price FROM sales.sale_lines")
    assert {r.sale_id: r.unit_price for r in priced}[taken] is None
    # A sale re-leased by someone else (its lease is no longer the one recorded) is not
    # written either.
    other = order(14)
    with sales_db.session() as session:
        [sale] = record_sales(session, [other])
    rows_updated = create_engine(database_url)
    with rows_updated.begin() as conn:
        conn.execute(
            text("UPDATE sales.sales SET lease_until = lease_until + interval '1 s' WHERE id = :i"),
            {"i": other.sale_id},
        )
    rows_updated.dispose()
    with sales_db.session() as session:
        assert save_leased(session, [_completed_run(sale)]) == [False]


# --- the whole purchase, in process, against the live customers and inventory -----------


def _buying_while_locked(
    app: Flask, database_url: str, table: str, buyers: list[Principal], product: int
) -> list[Any]:
    """Each buyer buys one unit at once, through batches on a database whose statements
    time out after 300 ms, while ``table`` stays locked: what each purchase answered."""
    slow = Database(
        service_role_url(database_url, "sales"), application_name="test", statement_timeout_ms=300
    )
    batcher = Batcher(app.extensions["sales_clients"], slow, window_s=0.2, max_size=8)
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn, conn.begin():
            conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
            return concurrently(
                app, slow, [purchase_call(batcher, app, b, product) for b in buyers]
            )
    finally:
        engine.dispose()
        slow.dispose()


def test_the_database_failing_under_a_batched_record_answers_each_sale_alone(
    sales_app: Flask, shop: Shop, database_url: str
) -> None:
    """The record's statement fails (here: a table it writes stays locked past the statement
    timeout): every purchase in the batch gets the single path's answer, 503
    ``database_unavailable`` naming its own order as ``unknown``, and nothing is recorded.
    A database that cannot be reached at all is the same 503 without an order."""
    product = shop.product(price="1.00", stock=10)
    buyers = customer_principals(shop, 4)
    answers = _buying_while_locked(sales_app, database_url, "sales.sale_lines", buyers, product)
    assert all(isinstance(a, DatabaseUnavailable) for a in answers), answers
    assert all(a.extra["sale_status"] == "unknown" for a in answers)
    assert len({a.extra["sale_id"] for a in answers}) == 4
    assert rows(database_url, "SELECT id FROM sales.sales") == []
    assert shop.stock(product) == 10

    away = Database("postgresql+psycopg2://nobody:x@127.0.0.1:9/none", application_name="test")
    batcher = Batcher(sales_app.extensions["sales_clients"], away, window_s=0.2, max_size=8)
    answers = concurrently(
        sales_app,
        sales_app.extensions["shop_db"],
        [purchase_call(batcher, sales_app, buyers[0], product)],
    )
    away.dispose()
    assert isinstance(answers[0], DatabaseUnavailable) and "sale_id" not in answers[0].extra


def test_the_database_failing_under_a_batched_save_leaves_each_sale_pending(
    sales_app: Flask, shop: Shop, database_url: str, sales_deps: LiveStack
) -> None:
    """Recorded, reserved and debited, then the save's statement fails: each sale answers
    503 ``sale_pending`` (``database_unavailable``) as on the single path, stays leased
    (recovery leaves it alone), and is completed by recovery once the lease ran out."""
    product = shop.product(price="2.00", stock=10)
    buyers = customer_principals(shop, 3, balance="10.00")
    answers = _buying_while_locked(sales_app, database_url, "sales.saga_steps", buyers, product)
    assert all(isinstance(a, SagaIncomplete) for a in answers), answers
    assert {(a.extra["reason"], a.extra["sale_status"]) for a in answers} == {
        ("database_unavailable", PENDING)
    }
    assert shop.stock(product) == 7  # the remote steps were taken
    early = recover(sales_deps)
    assert "examined 0:" in early.stdout, early.stdout + early.stderr  # still leased
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE sales.sales SET lease_until = now() WHERE status = 'pending'"))
    engine.dispose()
    settled = recover(sales_deps)
    assert "examined 3: 3 completed" in settled.stdout, settled.stdout + settled.stderr
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert (report.completed, report.units_sold) == (3, 3)
    assert {shop.balance(b.subject) for b in buyers} == {Decimal("8.00")}


# --- real sales processes -----------------------------------------------------------------


def test_one_key_twice_in_a_batch_buys_once_beside_its_neighbours(
    fault_stack: LiveStack, identity: Identity, database_url: str
) -> None:
    """Eight purchases sent together: one buyer's three under one Idempotency-Key, five
    other buyers' alone. One sale for the key (its twins answer it or ``sale_in_progress``,
    never a second purchase); every neighbour completes."""
    sales = start_batching_sales(fault_stack, 16)
    shop = Shop(fault_stack, identity)
    product = shop.product(price="3.00", stock=20)
    twin, twin_token = shop.buyer("10.00")
    others = [shop.buyer("10.00") for _ in range(5)]
    answers = all_at_once(
        [lambda: post_sale(sales, twin_token, product, 1, key="same")] * 3
        + [lambda t=token: post_sale(sales, t, product, 1) for _, token in others]
    )
    twins, neighbours = answers[:3], answers[3:]
    assert [a.status_code for a in neighbours] == [201] * 5
    done = [a for a in twins if a.status_code == 201]
    assert done and len({a.json()["id"] for a in done}) == 1, [a.text for a in twins]
    assert all(a.json()["code"] == "sale_in_progress" for a in twins if a.status_code != 201)
    assert shop.balance(twin["username"]) == Decimal("7.00")
    assert counted(fault_stack, "sales", "shop_sales_batch_size_count", step="record") >= 1
    assert counted(fault_stack, "sales", "shop_sales_batch_size_count", step="save") >= 1
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert (report.completed, report.units_sold) == (6, 6)


def test_a_worker_killed_after_the_batched_record_is_settled_after_the_lease(
    fault_stack: LiveStack, identity: Identity, database_url: str
) -> None:
    """The worker dies right after recording a batch, before any step: the orders stay
    leased (recovery, even ``--older-than 0``, leaves them alone), then once the lease
    ran out recovery drives each alone; the audit is clean."""
    sales = start_batching_sales(fault_stack, 8, SALES_CRASH_AFTER="record")
    shop = Shop(fault_stack, identity)
    product = shop.product(price="4.00", stock=12)
    buyers = [shop.buyer("10.00") for _ in range(5)]

    def attempt(token: str) -> str:
        try:
            return str(post_sale(sales, token, product, 2).status_code)
        except requests.ConnectionError:
            return "dropped"

    assert all_at_once([lambda t=token: attempt(t) for _, token in buyers]) == ["dropped"] * 5
    fault_stack.kill("sales")
    stranded = check_invariants(database_url, allow_pending=True)
    assert stranded.ok, stranded.violations
    assert 1 <= stranded.pending <= 5
    assert shop.stock(product) == 12  # nothing was reserved
    early = recover(fault_stack)
    assert "examined 0:" in early.stdout, early.stdout + early.stderr
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE sales.sales SET lease_until = now() WHERE status = 'pending'"))
    engine.dispose()
    settled = recover(fault_stack)
    assert f"examined {stranded.pending}: {stranded.pending} completed" in settled.stdout, (
        settled.stdout + settled.stderr
    )
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert (report.completed, report.pending) == (stranded.pending, 0)
    assert shop.stock(product) == 12 - 2 * stranded.pending
    charged = [shop.balance(b["username"]) for b, _ in buyers].count(Decimal("2.00"))
    assert charged == stranded.pending


def test_a_replay_while_a_batched_sale_is_driven_is_in_progress(
    fault_stack: LiveStack, identity: Identity, database_url: str
) -> None:
    """A retry under the same key while the first request drives its sale (held by its
    lease, no row lock): 409 ``sale_in_progress``; afterwards it replays the sale."""
    for service in ("customers", "inventory"):
        fault_stack.start(service)
    sales = fault_stack.start(
        "sales", workers=1, threads=8, extra_env={**GATHER, "SALES_BATCH_WINDOW_MS": "5"}
    ).url
    shop = Shop(fault_stack, identity)
    product = shop.product(price="1.00", stock=5)
    buyer, token = shop.buyer("10.00")
    admin = shop.admin
    latency = [{"kind": "latency", "dependency": "customers", "latency_ms": 800}]
    put = requests.put(sales + "/admin/faults", json={"faults": latency}, headers=admin, timeout=10)
    assert put.status_code == 200, put.text
    first: list[requests.Response] = []
    driving = threading.Thread(
        target=lambda: first.append(post_sale(sales, token, product, 1, key="slow-1"))
    )
    driving.start()
    try:
        deadline = 50
        seen: list[Any] = []
        while not seen and deadline:
            seen = rows(database_url, "SELECT id FROM sales.sales")
            deadline -= 1
            threading.Event().wait(0.05)
        assert seen, "the first request never recorded its order"
        replay = post_sale(sales, token, product, 1, key="slow-1")
        assert (replay.status_code, replay.json()["code"]) == (409, "sale_in_progress")
        assert replay.json()["sale_id"] == str(seen[0].id)
    finally:
        driving.join(timeout=30)
        requests.put(sales + "/admin/faults", json={"faults": []}, headers=admin, timeout=10)
    assert first[0].status_code == 201, first[0].text
    again = post_sale(sales, token, product, 1, key="slow-1")
    assert (again.status_code, again.json()["id"]) == (201, first[0].json()["id"])
    assert shop.balance(buyer["username"]) == Decimal("9.00")
