"""Build the HTML docs: export every app's OpenAPI document, then run Sphinx with ``-W``.

Usage::

    .venv/bin/python docs/build.py                 # → docs/_build/html
    .venv/bin/python docs/build.py --out /tmp/html --strict

1. ``docs/export_openapi.py`` builds each present service's app and writes its
   OpenAPI document to the generated directory (``docs/_generated``);
2. ``sphinx-build -W --keep-going -E -b html`` builds the site from scratch, so
   a warning anywhere fails the build and a module added since the last build
   is never missed.

``--strict`` also fails when a service package that is present in the
checkout cannot be imported or built (by default it is skipped with a note on
its pages, so the docs build while a service is half-written).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent


def build(out_dir: Path, *, generated: Path, strict: bool = False, quiet: bool = False) -> int:
    """Export the documents and run Sphinx; return the exit status (0 when clean)."""
    python = sys.executable
    export = [python, str(DOCS / "export_openapi.py"), str(generated)]
    if strict:
        export.append("--strict")
    status = subprocess.run(export, cwd=ROOT, check=False).returncode  # noqa: S603
    if status != 0:
        return status
    sphinx = [
        python,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-E",
        "-b",
        "html",
        "-d",
        str(out_dir.parent / ".doctrees"),
        "-D",
        f"shop_generated_dir={generated}",
        "-D",
        f"shop_docs_strict={int(strict)}",
        str(DOCS),
        str(out_dir),
    ]
    if quiet:
        sphinx.append("-q")
    with tempfile.TemporaryDirectory(prefix="shop-docs-metrics-") as metrics_dir:
        # Importing shopkit.gunicorn_conf (autodoc) would otherwise make a temporary
        # directory for Prometheus that nobody removes.
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
        return subprocess.run(sphinx, cwd=ROOT, env=env, check=False).returncode  # noqa: S603


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--out", type=Path, default=DOCS / "_build" / "html", help="HTML output directory"
    )
    parser.add_argument(
        "--generated",
        type=Path,
        default=DOCS / "_generated",
        help="where the exported OpenAPI documents go",
    )
    parser.add_argument(
        "--strict", action="store_true", help="fail if a present service cannot be built"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    args = parser.parse_args(argv)
    started = time.monotonic()
    status = build(
        args.out.resolve(), generated=args.generated.resolve(), strict=args.strict, quiet=args.quiet
    )
    elapsed = time.monotonic() - started
    if status == 0:
        print(f"docs built in {elapsed:.1f}s: {args.out / 'index.html'}")
    else:
        print(f"docs build failed (status {status}) after {elapsed:.1f}s", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
