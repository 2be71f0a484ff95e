"""The fault suite's tools: a shop arranged over HTTP, shoppers under load, and the verdict.

Every fault test follows one script: arrange products and funded buyers,
run shoppers while the fault happens, let recovery settle what was left
pending, then check that (1) every answer came within its bound, (2) every
error was a 409 or 503 problem (never a 500), (3) the invariants hold with
nothing pending, and (4) money and stock balance exactly: what left the
wallets is what the paid orders cost, and what left the shelves is what they
hold.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

import requests
from sqlalchemy import create_engine, text

from tests.support.invariants import check_invariants
from tests.support.live import LiveStack
from tests.support.products import create_product
from tests.support.sales import recover

#: A purchase answers within this many seconds, whatever fails (docs/errors.rst, "Failure behaviour").
PURCHASE_BOUND_S = 10.0
#: ``/healthz`` and ``/readyz`` answer within this many seconds.
HEALTH_BOUND_S = 1.0
#: Statuses a purchase may answer with under faults.
ALLOWED = {201, 404, 409, 503}
#: What each test saw, printed at the end of the session (the issue's closing note).
FINDINGS: list[str] = []


class Shop:
    """Products and funded buyers made through the running services."""

    def __init__(self, stack: LiveStack) -> None:
        self.stack = stack
        self.admin = {"Authorization": f"Bearer {stack.token(*stack.admin)}"}
        self.products: dict[int, int] = {}  # id → initial stock
        self.buyers: dict[str, Decimal] = {}  # username → initial balance

    def _url(self, service: str, path: str) -> str:
        return self.stack.url(service) + path

    def product(self, price: str = "3.00", stock: int = 500) -> int:
        post = partial(requests.post, self._url("inventory", "/products"), timeout=10)
        name = f"Fault {uuid.uuid4().hex[:6]}"
        product_id = int(
            create_product(post, self.admin, name=name, price=price, stock=stock)["id"]
        )
        self.products[product_id] = stock
        return product_id

    def buyer(self, balance: str = "500.00") -> str:
        """A registered, funded customer; returns an access token."""
        name = f"f_{uuid.uuid4().hex[:10]}"
        password = "correct-horse-battery"
        registered = requests.post(
            self._url("customers", "/customers"),
            json={
                "username": name,
                "password": password,
                "full_name": "Fault Tester",
                "email": f"{name}@example.com",
                "age": 30,
                "address": "1 Chaos Road",
                "gender": "female",
                "marital_status": "single",
            },
            timeout=10,
        )
        assert registered.status_code == 201, registered.text
        token = self.stack.token(name, password)
        charged = requests.post(
            self._url("customers", f"/customers/{name}/wallet/charge"),
            json={"amount": balance},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert charged.status_code == 200, charged.text
        self.buyers[name] = Decimal(balance)
        return token


@dataclass
class Answer:
    """One request's outcome: status (0 when no answer came), code, seconds taken."""

    status: int
    code: str | None
    seconds: float
    problem: bool


@dataclass
class Shoppers:
    """``threads`` shoppers buying random products (own Idempotency-Key each) until stopped."""

    url: str
    tokens: list[str]
    products: list[int]
    threads: int = 4
    #: Each shopper's pause between purchases.
    pause_s: float = 0.05
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Shoppers:
        for n in range(self.threads):
            worker = threading.Thread(target=self._shop, args=(n,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _shop(self, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            token = self.tokens[(n + i) % len(self.tokens)]
            product = self.products[(n * 7 + i) % len(self.products)]
            self.answers.append(buy(self.url, token, product, 1 + i % 2))
            self._stop.wait(self.pause_s)

    def stop(self) -> list[Answer]:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=40)
        return self.answers


def arrange(stack: LiveStack, buyers: int = 4, products: int = 3) -> tuple[Shop, list[str]]:
    """A shop of ``products`` products and ``buyers`` funded buyers; the buyers' tokens."""
    shop = Shop(stack)
    for _ in range(products):
        shop.product()
    return shop, [shop.buyer() for _ in range(buyers)]


def shoppers(stack: LiveStack, shop: Shop, tokens: list[str], threads: int = 4) -> Shoppers:
    """Shoppers buying ``shop``'s products from the stack's sales service, already started."""
    return Shoppers(stack.url("sales"), tokens, list(shop.products), threads=threads).start()


def buy(url: str, token: str, product: int, quantity: int, key: str | None = None) -> Answer:
    """``POST /sales``; a connection that fails without an answer counts as status 0."""
    started = time.monotonic()
    try:
        response = requests.post(
            url + "/sales",
            json={"product_id": product, "quantity": quantity},
            headers={
                "Authorization": f"Bearer {token}",
                "Idempotency-Key": key or uuid.uuid4().hex,
            },
            timeout=30,
        )
    except requests.RequestException:
        return Answer(0, None, time.monotonic() - started, False)
    elapsed = time.monotonic() - started
    problem = response.headers.get("Content-Type", "").startswith("application/problem+json")
    code = response.json().get("code") if problem else None
    return Answer(response.status_code, code, elapsed, problem)


#: The health prober, a process of its own: it prints the seconds each probe took.
_PROBER = """
import sys, time, urllib.request
url, until = sys.argv[1], time.monotonic() + float(sys.argv[2])
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
while time.monotonic() < until:
    for path in ("/healthz", "/readyz"):
        started = time.monotonic()
        try:
            direct.open(url + path, timeout=5).read()
        except OSError:  # a 503, a refused or timed-out connection: timed all the same
            pass
        print(time.monotonic() - started, flush=True)
    time.sleep(0.2)
"""


def probe_health(url: str, until: float, worst: list[float]) -> None:
    """Time ``/healthz`` and ``/readyz`` every 0.2 s until ``until``; keep each time in ``worst``.

    The probes run in a process of their own, as an orchestrator's would: timed from the
    test's process, they would also count the waits for its interpreter, held in turn by
    the shoppers' threads, which is no time the service took to answer.
    """
    seconds = max(until - time.monotonic(), 0.0)
    probed = subprocess.run(
        [sys.executable, "-c", _PROBER, url, str(seconds)],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    )  # fmt: skip
    worst.extend(float(line) for line in probed.stdout.split())


def check_answers(
    answers: list[Answer], bound_s: float = PURCHASE_BOUND_S, *, some_answered: bool = True
) -> float:
    """Every answer within ``bound_s``, every error a 409/503 problem; returns the worst."""
    answered = [a for a in answers if a.status]
    assert answered or not some_answered, "no purchase was answered at all"
    worst = max((a.seconds for a in answers), default=0.0)
    slowest = sorted(answers, key=lambda a: a.seconds)[-5:]
    assert worst <= bound_s, f"an answer took {worst:.2f} s (bound {bound_s} s): {slowest}"
    statuses = {a.status for a in answered}
    assert statuses <= ALLOWED, statuses
    errors = [a for a in answered if a.status != 201]
    assert all(a.problem for a in errors), [a for a in errors if not a.problem]
    assert not [a for a in answered if a.status >= 500 and a.status != 503]
    return worst


def settle_and_audit(stack: LiveStack, shop: Shop, database_url: str) -> str:
    """Run recovery until nothing is unsettled; check invariants, money and stock exactly."""
    deadline = time.monotonic() + 60
    report = check_invariants(database_url, allow_pending=True)
    while report.unsettled and time.monotonic() < deadline:
        recover(stack)
        time.sleep(0.5)  # a lease (a request that died mid-recording) may still run out
        report = check_invariants(database_url, allow_pending=True)
    report = check_invariants(database_url)
    assert report.ok, report.violations
    assert (report.pending, report.unsettled) == (0, 0)
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            balances = dict(
                conn.execute(
                    text(
                        "SELECT username, balance FROM customers.customers WHERE username = ANY(:u)"
                    ),
                    {"u": list(shop.buyers)},
                ).all()
            )
            spent_by_sales = conn.execute(
                text(
                    "SELECT coalesce(sum(total), 0) FROM sales.sales "
                    "WHERE status IN ('completed', 'shipped', 'delivered')"
                )
            ).scalar_one()
            stock = dict(
                conn.execute(
                    text("SELECT id, stock FROM inventory.products WHERE id = ANY(:p)"),
                    {"p": list(shop.products)},
                ).all()
            )
            sold = dict(
                conn.execute(
                    text(
                        "SELECT l.product_id, sum(l.quantity) FROM sales.sale_lines l "
                        "JOIN sales.sales s ON s.id = l.sale_id "
                        "WHERE s.status IN ('completed', 'shipped', 'delivered') "
                        "GROUP BY l.product_id"
                    )
                ).all()
            )
    finally:
        engine.dispose()
    spent = sum(shop.buyers[name] - balances[name] for name in shop.buyers)
    assert spent == spent_by_sales, (spent, spent_by_sales)
    for product_id, initial in shop.products.items():
        assert stock[product_id] + sold.get(product_id, 0) == initial, product_id
    return (
        f"audit clean: {report.completed} completed, {report.failed} failed, "
        f"{report.units_sold} units, {report.money_in_sales} charged, nothing pending"
    )


def note(fault: str, answers: list[Answer], worst: float, audit: str, extra: str = "") -> None:
    """Record one fault's figures for the session's summary."""
    counts: dict[Any, int] = {}
    for answer in answers:
        key = answer.status if answer.code is None else f"{answer.status} {answer.code}"
        counts[key] = counts.get(key, 0) + 1
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=str))
    FINDINGS.append(
        f"{fault}: {len(answers)} purchases ({summary}); worst answer {worst:.2f} s"
        f"{'; ' + extra if extra else ''}; {audit}"
    )
