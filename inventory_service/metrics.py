"""The inventory service's business metrics: stock reservations by outcome.

Declared here and exported by :func:`shopkit.metrics.init_metrics`; the
``StockOuts`` alert (``deploy/observability/alerts.yml``) reads the
``insufficient_stock`` outcome, so it exists at zero from the start.
"""

from __future__ import annotations

from prometheus_client import Counter

from shopkit.metrics import BusinessMetric

STOCK_RESERVATIONS = BusinessMetric(
    Counter,
    "shop_stock_reservations_total",
    "Stock reservation requests by outcome: ok or the refusal's code (replays not counted).",
    ("outcome",),
    initial=({"outcome": "ok"}, {"outcome": "insufficient_stock"}),
)

#: What the inventory service exports beside the common metrics.
METRICS = (STOCK_RESERVATIONS,)
