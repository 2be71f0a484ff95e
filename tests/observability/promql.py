"""The metric names the Grafana dashboards and the Prometheus alert rules use."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import yaml

from shopkit.config import PROJECT_ROOT

OBSERVABILITY = PROJECT_ROOT / "deploy" / "observability"
DASHBOARDS = sorted((OBSERVABILITY / "grafana" / "dashboards").glob("*.json"))
RULES = OBSERVABILITY / "alerts.yml"
#: Series Prometheus makes itself for every target (not on any /metrics).
PROMETHEUS_MADE = {"up"}

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "inf", "nan",
}  # fmt: skip
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def dashboard_expressions() -> Iterator[str]:
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                yield target["expr"]


def rule_expressions() -> Iterator[str]:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule["expr"]


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression (not functions, keywords or label names)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in _IDENT.finditer(expr):
        name = match.group()
        after = expr[match.end() :].lstrip()
        if name in _KEYWORDS or after.startswith("("):
            continue  # a keyword or a function call
        names.add(name)
    return names


def metric_names_used() -> set[str]:
    """Every metric name any dashboard panel or alert rule queries."""
    used: set[str] = set()
    for expr in (*dashboard_expressions(), *rule_expressions()):
        used |= metric_names(expr)
    return used
