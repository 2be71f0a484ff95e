"""``make run``'s Prometheus: the repository's config and alert rules, scraping local apps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from devstack.processes import ServiceProcess, spawn
from shopkit.config import PROJECT_ROOT

#: Where ``make run``'s Prometheus listens, when there is a ``prometheus`` binary.
PROMETHEUS_ADDRESS = "127.0.0.1:9090"


def start_prometheus(
    services: list[ServiceProcess], data_dir: Path, workers: Sequence[tuple[str, int]] = ()
) -> ServiceProcess | None:
    """Start Prometheus on the repo's config and rules, scraping these services (if installed).

    The config is ``deploy/observability/prometheus.yml``'s with the local
    ports as targets, ``workers`` (name, metrics port) included; data goes to
    ``<data dir>/prometheus``. Without a
    ``prometheus`` binary (or with ``SHOP_PROMETHEUS=0``), say how to get one.
    """
    binary = shutil.which("prometheus")
    if binary is None or os.environ.get("SHOP_PROMETHEUS") == "0":
        print(
            "launcher | metrics: each service's /metrics; for Prometheus and the alert rules, "
            "apt-get install prometheus (make run then starts it) or docker compose up",
            flush=True,
        )
        return None
    # deploy/observability/prometheus.yml with local targets (JSON is YAML too).
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(PROJECT_ROOT / "deploy" / "observability" / "alerts.yml")],
        "scrape_configs": [
            {
                "job_name": "shop",
                "honor_labels": True,
                "static_configs": [
                    *(
                        {"targets": [f"127.0.0.1:{p.port}"], "labels": {"service": p.service}}
                        for p in services
                    ),
                    *(
                        {"targets": [f"127.0.0.1:{port}"], "labels": {"service": name}}
                        for name, port in workers
                    ),
                ],
            }
        ],
    }
    (data_dir / "prometheus").mkdir(parents=True, exist_ok=True)
    config_path = data_dir / "prometheus" / "prometheus.yml"
    config_path.write_text(json.dumps(config, indent=2))
    process = ServiceProcess("prometheus", int(PROMETHEUS_ADDRESS.rsplit(":", 1)[1]))
    process.process = spawn(
        [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={data_dir / 'prometheus' / 'data'}",
            f"--web.listen-address={PROMETHEUS_ADDRESS}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    print(f"launcher | prometheus at http://{PROMETHEUS_ADDRESS} (alerts: /alerts)", flush=True)
    return process
