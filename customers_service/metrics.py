"""The customers service's business metrics: logins and wallet debits.

Declared here and exported by :func:`shopkit.metrics.init_metrics`.
"""

from __future__ import annotations

from prometheus_client import Counter

from shopkit.metrics import BusinessMetric

LOGINS = BusinessMetric(
    Counter,
    "shop_logins_total",
    "Password logins by outcome: ok or the refusal's code.",
    ("outcome",),
    initial=({"outcome": "ok"},),
)
WALLET_DEBITS = BusinessMetric(
    Counter, "shop_wallet_debits_total", "Wallet debits of sales made (replays not counted)."
)

#: What the customers service exports beside the common metrics.
METRICS = (LOGINS, WALLET_DEBITS)
