"""Export every service's OpenAPI document: ``python docs/export_openapi.py OUT``.

Each service is built with its own ``create_app()`` without touching a
database (the URL points at a port where nothing listens and the engine
connects lazily; the sales recovery thread is off), and the document it
serves at ``GET /openapi.json`` is written to ``OUT/<service>.json``. The docs
build (``docs/conf.py``) renders these files.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shopkit.config import Settings  # noqa: E402 (needs the path above)
from shopkit.registry import packages  # noqa: E402

#: Service name → package (:mod:`shopkit.registry`).
SERVICES = packages()
#: A URL where no database listens: building an app never connects.
DOCS_DATABASE_URL = "postgresql+psycopg2://docs@127.0.0.1:1/docs"


def build_app(service: str, package: str) -> Any:
    """The service's app, built as in production but without touching any database."""
    settings = Settings.from_env(
        service,
        database_url=DOCS_DATABASE_URL,
        log_level="ERROR",
        # Settings only: they appear nowhere in the document.
        admin_password="docs-export",  # noqa: S106
        service_client_secret="docs-export",  # noqa: S106
        recovery_interval_s=0,
    )
    return importlib.import_module(package).create_app({"SETTINGS": settings})


def spec_of(service: str) -> dict[str, Any]:
    """The service's OpenAPI document, as ``GET /openapi.json`` serves it."""
    app = build_app(service, SERVICES[service])
    return app.extensions["shop_api"].spec.to_dict()  # type: ignore[no-any-return]


def export(out_dir: Path) -> list[Path]:
    """Write ``<service>.json`` for every service to ``out_dir``; return the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for service in SERVICES:
        path = out_dir / f"{service}.json"
        path.write_text(json.dumps(spec_of(service), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("out_dir", type=Path, help="where to write <service>.json files")
    args = parser.parse_args(argv)
    for path in export(args.out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
