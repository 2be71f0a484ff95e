"""Export every service's OpenAPI document for the docs: ``python docs/export_openapi.py OUT``.

Each service package present in the checkout is built with its own
``create_app()`` (no database is touched: the URL points at a port where
nothing listens and the engine connects lazily; the sales recovery thread is
off) and its runtime document, exactly what ``GET /openapi.json`` answers, is
written to ``OUT/<service>.json``. ``manifest.json`` says which services were
exported, their routes, and why any was skipped.

Everything the document says (problem responses with their codes and
members, roles, the common routes, examples) is built by the services
themselves (:mod:`shopkit.openapi`, from the registry :mod:`shopkit.problems`),
so nothing is added here.

A package that cannot be imported or built (a service still being written)
is skipped and logged; ``--strict`` makes that an error instead.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("export_openapi")

#: The services and their packages.
SERVICES = {
    "customers": "customers_service",
    "inventory": "inventory_service",
    "sales": "sales_service",
    "reviews": "reviews_service",
}
#: A URL where no database listens: building an app never connects, and if
#: something did try it would fail at once instead of starting PostgreSQL.
DOCS_DATABASE_URL = "postgresql+psycopg2://docs@127.0.0.1:1/docs"


def build_app(service: str, package: str) -> Any:
    """The service's app, built as in production but without touching any database."""
    from shopkit.config import Settings  # noqa: PLC0415 (after sys.path is set)

    module = importlib.import_module(package)
    settings = Settings.from_env(
        service,
        database_url=DOCS_DATABASE_URL,
        log_level="ERROR",
        # Settings only: they appear nowhere in the document.
        admin_password="docs-export",  # noqa: S106
        service_client_secret="docs-export",  # noqa: S106
        recovery_interval_s=0,
    )
    return module.create_app({"SETTINGS": settings})


def api_routes(app: Any) -> list[tuple[str, str, str]]:
    """``(method, openapi path, endpoint)`` of every route of ``app`` but the asset routes."""
    from shopkit.openapi import ASSET_ENDPOINTS, openapi_path  # noqa: PLC0415

    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ASSET_ENDPOINTS:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method.lower(), openapi_path(rule.rule), rule.endpoint))
    return routes


def export(out_dir: Path, *, strict: bool = False) -> dict[str, Any]:
    """Write ``<service>.json`` for each present service and ``manifest.json``; return it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.json"):
        stale.unlink()
    manifest: dict[str, Any] = {"services": {}}
    for service, package in SERVICES.items():
        entry: dict[str, Any] = {"package": package}
        manifest["services"][service] = entry
        if importlib.util.find_spec(package) is None:
            entry.update(status="absent", error="the package is not in this checkout")
            log.info("%s: %s is not in this checkout", service, package)
            continue
        try:
            app = build_app(service, package)
            spec = app.extensions["shop_api"].spec.to_dict()
        except Exception as exc:  # a package being written: skip it, say why
            if strict:
                raise
            entry.update(status="skipped", error=f"{type(exc).__name__}: {exc}")
            log.warning("SKIPPED %s: cannot build %s.create_app(): %s", service, package, exc)
            log.debug("%s", traceback.format_exc())
            continue
        routes = api_routes(app)
        entry.update(
            status="ok",
            spec=f"{service}.json",
            routes=[[method.upper(), path] for method, path, _ in routes],
        )
        (out_dir / f"{service}.json").write_text(json.dumps(spec, indent=2) + "\n")
        log.info("%s: %d paths, %d routes", service, len(spec["paths"]), len(routes))
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("out_dir", type=Path, help="where to write <service>.json files")
    parser.add_argument(
        "--strict", action="store_true", help="fail if a present service cannot be built"
    )
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("export_openapi: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    manifest = export(args.out_dir, strict=args.strict)
    exported = [s for s, e in manifest["services"].items() if e["status"] == "ok"]
    if not exported:
        log.error("no service could be exported")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
