"""The seeder against real service processes: populate, replay, audit, determinism, failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from seeder import data
from tests.support.database import free_port
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, customer_payload
from tests.support.reviews import once_purchase_known
from tests.support.seeder import Run, ShopReader

pytestmark = pytest.mark.processes

PAID = ("completed", "shipped", "delivered")

#: A product no approved review rated yet, as inventory lists it.
UNRATED = {"average": None, "count": 0}


def ok(result: Any) -> str:
    assert result.exit_code == 0, result.output
    return str(result.output)


def test_populate_replay_audit(run_seeder: Run, shop_reader: ShopReader, seeder_stack: Any) -> None:
    output = ok(run_seeder("populate", "--customers", "30", "--products", "20", "--seed", "7"))
    assert "customers" in output and "Done in" in output
    customers, products = shop_reader.customers(), shop_reader.products()
    assert len(customers) == 30 and len(products) == 20
    expected = data.customers(7, 30)
    assert [c["username"] for c in customers] == sorted(c.username for c in expected)
    topped = {c.username: c.top_up or "0.00" for c in expected}
    assert all(c["balance"] == topped[c["username"]] for c in customers)
    # A seeded customer logs in with the password derived from the seed.
    assert seeder_stack.token(expected[0].username, data.derive_password(7, expected[0].username))

    output = ok(run_seeder("replay", "--purchases", "40", "--concurrency", "4", "--seed", "7"))
    assert "replay summary" in output and "attempts" in output and "lines per order" in output
    assert "Result checks failed" not in output
    sales = shop_reader.sales()
    assert 0 < len(sales) <= 40
    assert any(s["status"] in ("completed", "shipped", "delivered") for s in sales)
    assert any(len(s["items"]) > 1 for s in sales)  # carts of several lines
    assert all(1 <= len(s["items"]) <= 4 for s in sales)

    output = ok(run_seeder("audit"))
    assert "Audit passed" in output


def test_replay_with_cancellations_shipments_and_deliveries_then_audit(
    run_seeder: Run, shop_reader: ShopReader, reset_shop: Callable[[], None], tmp_path: Path
) -> None:
    reset_shop()
    ok(run_seeder("populate", "--customers", "12", "--products", "15", "--seed", "8"))
    before = shop_reader.balance_total()
    path = tmp_path / "outcomes.jsonl"
    output = ok(
        run_seeder(
            "replay",
            *("--purchases", "40", "--concurrency", "3", "--seed", "8"),
            *("--cancel-share", "0.3", "--ship-share", "0.6", "--deliver-share", "0.5"),
            *("--outcomes", str(path)),
        )
    )
    assert "Result checks failed" not in output
    outcomes = [json.loads(line) for line in path.read_text().splitlines()]
    completed = [o for o in outcomes if o["outcome"] == "completed"]
    after = {o["after"] for o in completed}
    assert {"cancelled", "shipped", "delivered"} <= after, after
    sales = {s["id"]: s for s in shop_reader.sales()}
    statuses = {s["status"] for s in sales.values()}
    assert {"cancelled", "shipped", "delivered"} <= statuses, statuses
    assert not statuses & {"pending", "cancelling"}
    shipped = [s for s in sales.values() if s["status"] in ("shipped", "delivered")]
    assert all(s["carrier"] and s["tracking_number"] for s in shipped)
    # Money: what left the wallets is exactly what the kept orders cost, net of top-ups.
    topped_up = sum((Decimal(o["topped_up"] or 0) for o in outcomes), Decimal(0))
    kept = sum((Decimal(s["total"]) for s in sales.values() if s["status"] in PAID), Decimal(0))
    assert shop_reader.balance_total() == before + topped_up - kept

    output = ok(run_seeder("audit"))
    assert "Audit passed" in output and "money refunded" in output


def test_populate_twice_creates_nothing_twice(run_seeder: Run, shop_reader: ShopReader) -> None:
    args = ("populate", "--customers", "25", "--products", "15", "--seed", "3")
    ok(run_seeder(*args))
    before = (shop_reader.customers(), shop_reader.products())
    output = ok(run_seeder(*args))
    assert "already populated" in output
    assert "25 customers and 15 products already exist" in output
    assert (shop_reader.customers(), shop_reader.products()) == before  # balances included

    # A bigger run with the same seed adds only what is missing (and tops up only the new).
    output = ok(run_seeder("populate", "--customers", "40", "--products", "24", "--seed", "3"))
    assert "25 customers and 15 products already existed" in output
    customers, products = shop_reader.customers(), shop_reader.products()
    assert len(customers) == 40 and len(products) == 24
    assert [c for c in customers if c["username"] in {b["username"] for b in before[0]}] == (
        before[0]
    )
    assert products == sorted(
        [p.payload() | {"archived": False, "rating": UNRATED} for p in data.products(3, 24)],
        key=lambda p: p["description"],
    )


def test_same_seed_on_a_fresh_database_gives_identical_data(
    run_seeder: Run, shop_reader: ShopReader, reset_shop: Callable[[], None]
) -> None:
    args = (
        "populate",
        "--customers",
        "40",
        "--products",
        "30",
        "--seed",
        "11",
        "--batch-size",
        "16",
    )
    ok(run_seeder(*args))
    first = (shop_reader.customers(), shop_reader.products())
    reset_shop()
    assert shop_reader.customers() == []
    ok(run_seeder(*args))
    assert (shop_reader.customers(), shop_reader.products()) == first
    assert len(first[0]) == 40 and len(first[1]) == 30


def test_replay_with_one_shopper_at_a_time_repeats_exactly(
    run_seeder: Run, reset_shop: Callable[[], None], tmp_path: Path
) -> None:
    def one_run(name: str) -> list[dict[str, Any]]:
        reset_shop()
        ok(run_seeder("populate", "--customers", "8", "--products", "6", "--seed", "5"))
        path = tmp_path / f"{name}.jsonl"
        ok(
            run_seeder(
                "replay",
                "--purchases",
                "20",
                "--concurrency",
                "1",
                "--seed",
                "5",
                "--review-share",
                "0.5",
                "--outcomes",
                str(path),
            )
        )
        return [json.loads(line) for line in path.read_text().splitlines()]

    first, second = one_run("first"), one_run("second")
    assert first == second
    assert [o["attempt"] for o in first] == list(range(20))
    assert any(o["outcome"] == "completed" for o in first)
    assert any((o["review"] or "").endswith("*") for o in first)


def test_audit_detects_injected_violations(run_seeder: Run, sql: Callable[..., list[Any]]) -> None:
    ok(run_seeder("populate", "--customers", "10", "--products", "8", "--seed", "9"))
    replay = ("replay", "--purchases", "12", "--concurrency", "2", "--seed", "9")
    ok(run_seeder(*replay, "--cancel-share", "0.4"))
    ok(run_seeder("audit"))

    # A debit with no sale behind it (and a ledger that no longer matches the balance).
    customer_id, balance = sql(
        "SELECT id, balance FROM customers.customers WHERE role = 'customer' AND balance >= 1 "
        "ORDER BY id LIMIT 1"
    )[0]
    sql(
        "INSERT INTO customers.ledger_entries (customer_id, kind, amount, balance_after, actor, "
        "sale_id) VALUES (:c, 'sale_debit', -1.00, :b, 'test', gen_random_uuid())",
        c=customer_id,
        b=Decimal(balance) - 1,
    )
    result = run_seeder("audit")
    assert result.exit_code == 1, result.output
    assert "for unknown sale" in result.output
    assert "Audit FAILED" in result.output and "Traceback" not in result.output

    sql("DELETE FROM customers.ledger_entries WHERE actor = 'test'")
    ok(run_seeder("audit"))

    def hold(sale_status: str, status: str) -> str:
        """Set the first ``sale_status`` order's reservation to ``status``, its order aged."""
        stamps = "released_at = now()" if status == "released" else "released_at = NULL"
        (sale_id,) = sql(
            f"UPDATE inventory.reservations SET status = :status, {stamps}, returned_at = NULL "
            "WHERE sale_id = (SELECT id FROM sales.sales WHERE status = :sale_status "
            "ORDER BY id LIMIT 1) RETURNING sale_id",
            status=status,
            sale_status=sale_status,
        )[0]
        sql(
            "UPDATE sales.sales SET updated_at = now() - interval '1 minute' WHERE id = :s",
            s=sale_id,
        )
        return str(sale_id)

    # Stock given back for a completed sale while its money is kept.
    sale_id = hold("completed", "released")
    result = run_seeder("audit")
    assert result.exit_code == 1, result.output
    assert f"sale {sale_id}: reservation released" in result.output
    hold("completed", "reserved")
    ok(run_seeder("audit"))

    # A cancelled order refunded while its stock is still held.
    sale_id = hold("cancelled", "reserved")
    result = run_seeder("audit")
    assert result.exit_code == 1, result.output
    assert f"sale {sale_id}: reservation reserved" in result.output
    assert "units in paid orders" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("populate", "--customers", "5", "--products", "5"),
        ("replay", "--purchases", "5"),
        ("audit",),
    ],
)
def test_a_service_down_is_a_clear_error(run_seeder: Run, args: tuple[str, ...]) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = run_seeder(*args, env={"CUSTOMERS_URL": nowhere})
    assert result.exit_code == 3, result.output
    assert f"The customers service at {nowhere} is unreachable" in result.output
    assert "CUSTOMERS_URL" in result.output
    assert "Traceback" not in result.output


def test_wait_gives_up_with_the_same_clear_error(run_seeder: Run) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = run_seeder("audit", "--wait", "1", "--inventory-url", nowhere)
    assert result.exit_code == 3, result.output
    assert "Waiting up to 1 s" in result.output
    assert f"The inventory service at {nowhere} is unreachable" in result.output


def test_wrong_admin_password_and_usage_errors(run_seeder: Run) -> None:
    result = run_seeder("audit", env={"ADMIN_PASSWORD": "not-the-password"})
    assert result.exit_code == 1, result.output
    assert "admin login failed" in result.output and "ADMIN_PASSWORD" in result.output

    result = run_seeder("replay", "--seed", "1")
    assert result.exit_code == 2
    assert "exactly one of --purchases" in result.output

    result = run_seeder("replay", "--purchases", "3", "--seed", "424242")
    assert result.exit_code == 1
    assert "No customers of seed 424242" in result.output


def test_ctrl_c_stops_a_replay_cleanly_with_its_summary(
    run_seeder: Run, seeder_env: dict[str, str]
) -> None:
    ok(run_seeder("populate", "--customers", "10", "--products", "10", "--seed", "4"))
    command = "replay --duration 0 --rate 20 --concurrency 2 --seed 4 --report-every 0.3"
    process = subprocess.Popen(
        [sys.executable, "-m", "seeder", *command.split()],
        env={**os.environ, **seeder_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until it is buying
        line = process.stdout.readline()
        lines.append(line)
        if line.startswith("replay:") and " 0 attempts" not in line:
            break
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=30)
    output = "".join(lines) + rest
    assert process.returncode == 0, output
    assert "Stopping" in output and "replay summary, seed 4" in output
    assert "Traceback" not in output


def test_replay_skips_reviews_when_the_reviews_service_is_down(
    run_seeder: Run, shop_reader: ShopReader
) -> None:
    ok(run_seeder("populate", "--customers", "6", "--products", "5", "--seed", "2"))
    nowhere = f"http://127.0.0.1:{free_port()}"
    output = ok(
        run_seeder(
            "replay",
            "--purchases",
            "8",
            "--review-share",
            "1",
            "--seed",
            "2",
            env={"REVIEWS_URL": nowhere},
        )
    )
    assert f"The reviews service at {nowhere} is unreachable" in output
    assert "Reviews will be skipped" in output
    assert "skipped: reviews unavailable" in output
    assert any(s["status"] == "completed" for s in shop_reader.sales())


def test_demo_populates_once_then_replays(run_seeder: Run, shop_reader: ShopReader) -> None:
    args = ("demo", "--customers", "10", "--products", "8", "--seed", "6", "--duration", "2")
    output = ok(run_seeder(*args, "--rate", "5", "--wait", "5"))
    assert "Populating seed 6" in output and "replay summary, seed 6" in output
    output = ok(run_seeder(*args, "--rate", "5"))
    assert "Seed 6 was already populated" in output
    assert len(shop_reader.customers()) == 10 and len(shop_reader.products()) == 8
    assert shop_reader.sales()


# --- the demo beside other actors ---------------------------------------------------------------


def call(stack: Any, method: str, service: str, path: str, token: str, **kwargs: Any) -> Any:
    """One request to a service of the stack with a bearer token; the response."""
    return requests.request(
        method,
        stack.url(service) + path,
        headers={"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})},
        timeout=10,
        **kwargs,
    )


def test_the_replay_moderates_only_the_reviews_its_shoppers_wrote(
    run_seeder: Run, seeder_stack: Any, reset_shop: Callable[[], None]
) -> None:
    reset_shop()
    ok(run_seeder("populate", "--customers", "6", "--products", "5", "--seed", "12"))
    # A real user registers, tops up, buys and reviews by hand, as in the storefront.
    person = customer_payload()
    assert requests.post(seeder_stack.url("customers") + "/customers", json=person, timeout=10).ok
    token = seeder_stack.token(person["username"], person["password"])
    path = f"/customers/{person['username']}/wallet/charge"
    assert call(seeder_stack, "POST", "customers", path, token, json={"amount": "500.00"}).ok
    product = requests.get(seeder_stack.url("sales") + "/catalog", timeout=10).json()["items"][0]
    bought = call(
        seeder_stack,
        "POST",
        "sales",
        "/sales",
        token,
        json={"product_id": product["id"], "quantity": 1},
    )
    assert bought.status_code == 201, bought.text
    review = {"product_id": product["id"], "rating": 4, "comment": "Written by a person."}
    written = once_purchase_known(
        lambda: call(seeder_stack, "POST", "reviews", "/reviews", token, json=review)
    )
    assert written.status_code == 201, written.text

    output = ok(run_seeder("replay", "--purchases", "20", "--review-share", "1", "--seed", "12"))
    assert "approved" in output  # the replay's own reviews were moderated

    admin = seeder_stack.token(ADMIN_USERNAME, ADMIN_PASSWORD)
    mine = call(seeder_stack, "GET", "reviews", f"/reviews/{written.json()['id']}", admin).json()
    assert mine["status"] == "pending"  # the person's review waits for a human moderator
    moderated = call(
        seeder_stack, "GET", "reviews", "/reviews", admin, params={"status": "approved"}
    )
    assert moderated.json()["total"] >= 1


def test_two_replays_on_the_same_shoppers_raise_no_false_alarm(
    run_seeder: Run, seeder_env: dict[str, str], reset_shop: Callable[[], None]
) -> None:
    """Two replays of one seed shop as the same three customers at once (as ``make run``'s
    demo and a replay run beside it do): each moves the other's balances and carts, and
    neither reports a failed check; the audit passes."""
    reset_shop()
    ok(run_seeder("populate", "--customers", "3", "--products", "6", "--seed", "14"))
    command = [
        sys.executable, "-m", "seeder", "replay", "--purchases", "30", "--concurrency", "3",
        "--seed", "14", "--cancel-share", "0.3", "--review-share", "0.3",
    ]  # fmt: skip
    replays = [
        subprocess.Popen(
            command,
            env={**os.environ, **seeder_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=240)[0] for process in replays]
    for process, output in zip(replays, outputs, strict=True):
        assert process.returncode == 0, output
        assert "Result checks failed" not in output and "Traceback" not in output
        assert "completed" in output
    assert "Audit passed" in ok(run_seeder("audit"))


def test_a_real_double_charge_is_still_caught(
    run_seeder: Run,
    seeder_stack: Any,
    sql: Callable[..., list[Any]],
    reset_shop: Callable[[], None],
) -> None:
    """The wallet charged twice for one order (a second debit naming the same sale, with
    the money taken again) fails the replay's check of that order's own ledger entries."""
    reset_shop()
    ok(run_seeder("populate", "--customers", "2", "--products", "4", "--seed", "13"))
    admin = seeder_stack.token(ADMIN_USERNAME, ADMIN_PASSWORD)
    for spec in data.customers(13, 2):  # deep enough to pay every order twice
        path = f"/customers/{spec.username}/wallet/charge"
        assert call(seeder_stack, "POST", "customers", path, admin, json={"amount": "5000.00"}).ok
    (index,) = sql(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'customers' "
        "AND indexname = 'uq_ledger_entries_sale_kind'"
    )[0]
    sql("DROP INDEX customers.uq_ledger_entries_sale_kind")
    sql(
        """
        CREATE FUNCTION customers.charge_twice() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF pg_trigger_depth() = 1 THEN
                UPDATE customers.customers SET balance = balance + NEW.amount
                    WHERE id = NEW.customer_id;
                INSERT INTO customers.ledger_entries
                    (customer_id, kind, amount, balance_after, actor, sale_id)
                    VALUES (NEW.customer_id, 'sale_debit', NEW.amount,
                            NEW.balance_after + NEW.amount, 'double-charge', NEW.sale_id);
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER charge_twice AFTER INSERT ON customers.ledger_entries
            FOR EACH ROW WHEN (NEW.kind = 'sale_debit') EXECUTE FUNCTION customers.charge_twice();
        """
    )
    try:
        result = run_seeder(
            "replay", "--purchases", "3", "--concurrency", "1", "--seed", "13",
            "--cancel-share", "0", "--review-share", "0",
        )  # fmt: skip
        assert (
            sql("SELECT count(*) FROM customers.ledger_entries WHERE actor = 'double-charge'")[0][0]
            >= 1
        )
        assert result.exit_code == 1, result.output
        assert "Result checks failed" in result.output
        assert "charged 2 times for the order" in result.output
    finally:
        sql("DROP TRIGGER charge_twice ON customers.ledger_entries")
        sql("DROP FUNCTION customers.charge_twice()")
        reset_shop()
        sql(index)
