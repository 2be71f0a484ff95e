"""A fresh service's ``/metrics`` already shows, at zero, every label set the rules query.

A rate over a series that does not exist yet is "no data", not 0: a dashboard
panel stays empty and an alert rule cannot tell "no errors" from "not
scraped". Each service is built in a process of its own (the metrics are
per process, as under gunicorn) and scraped once, before any request.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shopkit.config import PROJECT_ROOT
from shopkit.registry import SERVICES, app
from tests.support.database import service_role_url
from tests.support.identity import ADMIN_PASSWORD, ADMIN_USERNAME, SERVICE_SECRET

#: Builds one service's app as gunicorn would and prints its first ``/metrics``.
SCRAPE = """
import importlib, sys
app = importlib.import_module(sys.argv[1]).create_app()
answer = app.test_client().get("/metrics")
assert answer.status_code == 200, answer.status_code
print(answer.get_data(as_text=True))
"""


def group_series(group: str, stream: str) -> list[tuple[str, dict[str, str]]]:
    """The series of a consumer group the Events row and the event alerts query."""
    return [
        *(
            ("shop_events_consumed_total", {"group": group, "outcome": outcome})
            for outcome in ("applied", "duplicate", "failed", "dead_lettered")
        ),
        ("shop_consumer_lag_entries", {"group": group, "stream": stream}),
        ("shop_consumer_lag_seconds", {"group": group, "stream": stream}),
        ("shop_dead_letters", {"group": group}),
    ]


#: Label sets the dashboards and alert rules (deploy/observability) query, by service.
EXPECTED = {
    "customers": [
        ("shop_logins_total", {"outcome": "ok"}),
        ("shop_events_published_total", {"stream": "events:wallet"}),
        ("shop_outbox_backlog", {"service": "customers"}),
    ],
    "inventory": [
        ("shop_stock_reservations_total", {"outcome": "ok"}),
        ("shop_stock_reservations_total", {"outcome": "insufficient_stock"}),
        ("shop_idempotent_replays_total", {"endpoint": "POST /internal/reservations"}),
        # Its outbox, and its ratings group on the review stream (in its own workers).
        ("shop_outbox_backlog", {"service": "inventory"}),
        *group_series("inventory", "events:review"),
    ],
    "sales": [
        ("shop_sales_total", {"status": "completed", "failure_code": ""}),
        *(
            ("shop_recovered_sales_total", {"outcome": outcome})
            for outcome in ("completed", "failed", "cancelled", "still_pending")
        ),
        ("shop_idempotent_replays_total", {"endpoint": "POST /sales"}),
        ("shop_events_published_total", {"stream": "events:order"}),
        ("shop_outbox_backlog", {"service": "sales"}),
        ("shop_idempotent_replays_total", {"endpoint": "POST /cart/checkout"}),
    ],
    # Its outbox, and its verified-purchases group on the order stream.
    "reviews": [
        ("shop_outbox_backlog", {"service": "reviews"}),
        *group_series("reviews", "events:order"),
    ],
    "notifications": [],
}


def first_scrape(service: str, database_url: str) -> dict[tuple[str, str], float]:
    """``(sample name, labels as JSON) → value`` of a fresh ``service`` process's ``/metrics``."""
    env = {
        "DATABASE_URL": service_role_url(database_url, service),
        "ADMIN_USERNAME": ADMIN_USERNAME,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "SERVICE_CLIENT_SECRET": SERVICE_SECRET,
        "SALES_RECOVERY_INTERVAL": "0",
        "LOG_LEVEL": "ERROR",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRAPE, app(service).package],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return {
        (sample.name, json.dumps(sample.labels, sort_keys=True)): sample.value
        for family in text_string_to_metric_families(done.stdout)
        for sample in family.samples
    }


@pytest.mark.parametrize("service", [s.name for s in SERVICES])
def test_queried_series_exist_at_zero_before_any_request(service: str, database_url: str) -> None:
    samples = first_scrape(service, database_url)
    expected = [
        *EXPECTED[service],
        *(("shop_dependency_errors_total", {"dependency": d}) for d in app(service).calls),
    ]
    if service != "customers":
        assert app(service).calls  # every service but customers calls another one
    for name, labels in expected:
        key = (name, json.dumps(labels, sort_keys=True))
        assert samples.get(key) == 0.0, (key, sorted(k for k in samples if k[0] == name))
