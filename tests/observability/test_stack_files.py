"""The observability stack's files: Prometheus config and rules, Grafana provisioning, Compose."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import yaml

from shopkit.config import PROJECT_ROOT
from shopkit.registry import SERVICES
from tests.observability.promql import (
    DASHBOARDS,
    OBSERVABILITY,
    RULES,
    dashboard_expressions,
    metric_names,
    metric_names_used,
)

NEW_SERVICES = ("jaeger", "prometheus", "grafana")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: apt-get install prometheus (make test does)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


def test_promtool_accepts_the_config_and_the_rules() -> None:
    config = promtool("check", "config", str(OBSERVABILITY / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout + config.stderr
    rules = promtool("check", "rules", str(RULES))
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_the_alert_rules_cover_what_the_issue_asks() -> None:
    rules = {
        rule["alert"]: rule["expr"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    }
    assert "shop_sales_oldest_pending_age_seconds" in rules["SaleUnsettledPastRecoveryWindow"]
    assert 'status=~"5.."' in rules["ServerErrorRate"]
    assert "shop_dependency_errors_total" in rules["DependencyErrors"]
    assert 'outcome="insufficient_stock"' in rules["StockOuts"]
    assert "shop_consumer_lag_seconds) > 30" in rules["ConsumerLagging"]
    assert "shop_dead_letters) > 0" in rules["DeadLetters"]
    assert "deriv(shop_outbox_backlog[10m])" in rules["OutboxBacklogGrowing"]


def test_the_alert_rules_pass_their_promtool_unit_tests() -> None:
    """``promtool test rules``: each event alert fires on the series it is for, and only then."""
    unit_tests = sorted((PROJECT_ROOT / "tests" / "observability" / "rules").glob("*_test.yml"))
    assert unit_tests
    tested = set()
    for path in unit_tests:
        done = promtool("test", "rules", str(path))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout, done.stdout
        tested |= set(re.findall(r"alertname: (\w+)", path.read_text()))
    assert {"ConsumerLagging", "DeadLetters", "OutboxBacklogGrowing"} <= tested


def test_prometheus_scrapes_every_service_and_worker() -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets == {f"{s.name}:{s.port}" for s in SERVICES} | {
        f"{s.name}-worker:{s.worker_metrics_port}" for s in SERVICES if s.worker_metrics_port
    }
    assert "notifications-worker:5104" in targets


def test_grafana_provisions_both_data_sources_and_both_dashboards() -> None:
    provisioning = OBSERVABILITY / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "datasources.yml").read_text())
    uids = {source["uid"]: source for source in sources["datasources"]}
    assert uids["prometheus"]["url"] == "http://prometheus:9090"
    assert uids["jaeger"]["type"] == "jaeger"
    titles = {}
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        titles[board["title"]] = board
        for panel in board["panels"]:
            if panel["type"] == "row":  # a heading: no query of its own
                continue
            assert panel["datasource"]["uid"] in uids, (path.name, panel["title"])
            assert panel["description"], (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])
    assert set(titles) == {"Saga", "Services"}
    saga_text = json.dumps(titles["Saga"])
    for metric in (
        "shop_sales_total",
        "shop_saga_step_duration_seconds_bucket",
        "shop_sales_pending",
        "shop_recovery_runs_total",
        "shop_recovered_sales_total",
        "shop_idempotent_replays_total",
    ):
        assert metric in saga_text
    assert "flask_http_request_duration_seconds_bucket" in json.dumps(titles["Services"])


def test_the_saga_dashboard_has_an_events_row() -> None:
    board = json.loads((OBSERVABILITY / "grafana" / "dashboards" / "saga.json").read_text())
    panels = board["panels"]
    [row] = [i for i, panel in enumerate(panels) if panel["type"] == "row"]
    assert panels[row]["title"] == "Events"
    below = json.dumps(panels[row + 1 :])
    for query in (
        "sum by (stream) (rate(shop_events_published_total[1m]))",
        "sum by (group, outcome) (rate(shop_events_consumed_total[1m]))",
        "max by (group, stream) (shop_consumer_lag_seconds)",
        "max by (group, stream) (shop_consumer_lag_entries)",
        "max by (service) (shop_outbox_backlog)",
        "max by (group) (shop_dead_letters)",
    ):
        assert query in below, query
    # The row sits below every other panel, and its panels do not overlap.
    top = panels[row]["gridPos"]["y"]
    assert all(p["gridPos"]["y"] + p["gridPos"]["h"] <= top for p in panels[:row])
    cells = set()
    for panel in panels[row:]:
        grid = panel["gridPos"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, panel["title"]
        cells |= area


def test_metric_names_are_read_from_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, step) (rate(x_bucket{a="b(c)"}[5m])))'
    ) == {"x_bucket"}
    assert metric_names("max by (status) (a) + sum without (x) (b)") == {"a", "b"}
    assert metric_names("sum(rate(a_total[1m])) / ignoring(x) b_total > bool 0") == {
        "a_total",
        "b_total",
    }
    assert {"shop_sales_total", "flask_http_request_total", "up"} <= metric_names_used()
    assert all(expr.strip() for expr in dashboard_expressions())


def test_compose_runs_the_stack_with_health_checks_or_a_reason() -> None:
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    services = yaml.safe_load(text)["services"]
    for name in NEW_SERVICES:
        service = services[name]
        assert "profiles" not in service, f"{name} should start with a plain docker compose up"
        if "healthcheck" not in service:
            # The reason is written down right in the service's definition.
            block = text[text.index(f"\n  {name}:") :].split("\n  # ---")[0]
            block = block.split("\n\n")[0]
            assert "No healthcheck:" in block, f"{name} has no healthcheck and no reason"
    assert "16686:16686" in services["jaeger"]["ports"]
    assert "9090:9090" in services["prometheus"]["ports"]
    assert "3000:3000" in services["grafana"]["ports"]
    mounted = " ".join(services["prometheus"]["volumes"] + services["grafana"]["volumes"])
    for path in ("prometheus.yml", "alerts.yml", "grafana/provisioning", "grafana/dashboards"):
        assert f"./deploy/observability/{path}" in mounted
    env = services["sales"]["environment"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith("http://jaeger:4318}")
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
