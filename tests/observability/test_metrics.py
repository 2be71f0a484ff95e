"""The ``shop_*`` business metrics move as they should, pooled across gunicorn workers.

One scenario against real processes (a purchase, refusals, a replay, a failed
login, a sale recovered after customers came back), then every metric is
read from ``/metrics`` and compared with before. The same scrape proves that
every metric the Grafana dashboards and alert rules use really exists.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from notifications_service.notifications import GROUP, STREAMS
from shopkit.events.metrics import serve_worker_metrics
from tests.observability.promql import PROMETHEUS_MADE, metric_names_used
from tests.support.database import free_port
from tests.support.live import LiveStack
from tests.support.tracing import Arrange

pytestmark = pytest.mark.processes

Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


def scrape(stack: LiveStack, service: str) -> Samples:
    return scrape_url(stack.url(service) + "/metrics")


def scrape_url(url: str) -> Samples:
    body = requests.get(url, timeout=10).text
    samples: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[sample.name][frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for key, v in samples.get(name, {}).items() if wanted <= key)


def test_business_metrics_move_and_dashboards_use_only_real_metrics(
    traced: LiveStack, arrange: Arrange
) -> None:
    services = ("customers", "inventory", "sales")
    before = {service: scrape(traced, service) for service in services}

    product = arrange.product(price="10.00", stock=5)
    _, rich = arrange.buyer("100.00")
    _, poor = arrange.buyer("1.00")
    key = f"metrics-{uuid.uuid4().hex}"
    assert arrange.buy(rich, product, 1, key=key).status_code == 201
    replay = arrange.buy(rich, product, 1, key=key)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert arrange.buy(poor, product, 1).json()["code"] == "insufficient_funds"
    assert arrange.buy(rich, product, 50).json()["code"] == "insufficient_stock"
    wrong = arrange.call("customers", "POST", "/auth/login", json={"username": "nobody", "password": "wrong-password"})  # fmt: skip
    assert wrong.status_code == 401
    # customers restarts below (its counters start again from zero): read it now.
    customers = scrape(traced, "customers")
    logins = "shop_logins_total"
    assert (
        value(customers, logins, outcome="ok") - value(before["customers"], logins, outcome="ok")
        == 2
    )  # the two buyers
    assert (
        value(customers, logins, outcome="invalid_credentials")
        - value(before["customers"], logins, outcome="invalid_credentials")
        == 1
    )
    debits = "shop_wallet_debits_total"
    assert (
        value(customers, debits) - value(before["customers"], debits) == 1
    )  # refusals not counted

    # A purchase stuck while customers is down shows as pending, then recovery settles it.
    traced.kill("customers")
    try:
        assert arrange.buy(rich, product, 1).status_code == 503
        stuck = scrape(traced, "sales")
        assert value(stuck, "shop_sales_pending", status="pending") == 1
        assert value(stuck, "shop_sales_pending", status="cancelling") == 0
        assert value(stuck, "shop_sales_oldest_pending_age_seconds", status="pending") > 0
        dependency_errors = value(stuck, "shop_dependency_errors_total", dependency="customers")
        assert dependency_errors >= 1 + value(
            before["sales"], "shop_dependency_errors_total", dependency="customers"
        )
    finally:
        traced.start("customers", workers=1, extra_env=traced.processes["customers"].env)
    deadline = time.monotonic() + 20
    while value(scrape(traced, "sales"), "shop_sales_pending", status="pending"):
        assert time.monotonic() < deadline, "recovery never settled the stuck sale"
        time.sleep(0.2)

    after = {service: scrape(traced, service) for service in services}

    def moved(service: str, name: str, **labels: str) -> float:
        return value(after[service], name, **labels) - value(before[service], name, **labels)

    # sales: two completed (one by recovery), two refused; the saga steps behind them.
    assert moved("sales", "shop_sales_total", status="completed", failure_code="") == 2
    assert (
        moved("sales", "shop_sales_total", status="failed", failure_code="insufficient_funds") == 1
    )
    assert (
        moved("sales", "shop_sales_total", status="failed", failure_code="insufficient_stock") == 1
    )
    steps = "shop_saga_step_duration_seconds_count"
    # The stuck sale is driven 1 + u times: u debits unavailable (a recovery pass may come
    # while customers is still down), then the one that completes it.
    unavailable = moved("sales", steps, step="debit", outcome="unavailable")
    assert unavailable >= 1
    assert moved("sales", steps, step="reserve", outcome="ok") == 3 + unavailable
    assert moved("sales", steps, step="reserve", outcome="refused") == 1
    assert moved("sales", steps, step="debit", outcome="ok") == 2
    assert moved("sales", steps, step="debit", outcome="refused") == 1
    assert moved("sales", steps, step="release", outcome="ok") == 1
    assert moved("sales", "shop_saga_step_duration_seconds_sum", step="debit") > 0
    assert moved("sales", "shop_recovery_runs_total") >= 1
    assert moved("sales", "shop_recovered_sales_total", outcome="completed") == 1
    assert value(after["sales"], "shop_sales_pending", status="pending") == 0
    assert moved("sales", "shop_idempotent_replays_total", endpoint="POST /sales") == 1
    # inventory: its reservations, and recovery's replays of the stuck sale's one.
    assert moved("inventory", "shop_stock_reservations_total", outcome="ok") == 3
    assert moved("inventory", "shop_stock_reservations_total", outcome="insufficient_stock") == 1
    assert (
        moved("inventory", "shop_idempotent_replays_total", endpoint="POST /internal/reservations")
        == unavailable
    )
    # customers (restarted, so counted from zero): the recovered sale's debit.
    assert value(after["customers"], "shop_wallet_debits_total") == 1
    # Each service shows only its own business metrics.
    assert "shop_sales_total" not in after["customers"]
    assert "shop_wallet_debits_total" not in after["sales"]

    # Every metric a dashboard panel or an alert rule uses exists on some service, or on
    # the notifications worker's own port (the same code as python -m
    # notifications_service.worker serves it with).
    worker_port = free_port()
    assert serve_worker_metrics(worker_port, {GROUP: STREAMS}) is not None
    worker = scrape_url(f"http://127.0.0.1:{worker_port}/metrics")
    scrapes = [*after.values(), customers, worker]
    exposed = {name for samples in scrapes for name in samples} | PROMETHEUS_MADE
    used = metric_names_used()
    assert used, "no metric names found in the dashboards and rules"
    assert used <= exposed, sorted(used - exposed)
