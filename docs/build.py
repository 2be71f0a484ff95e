"""Build the HTML docs with warnings as errors: ``python docs/build.py [--out DIR]``.

``make docs`` runs it. Sphinx exports each app's OpenAPI document first
(``docs/conf.py``), then builds every page from scratch (``-E``), so a module
added since the last build is never missed and any warning fails the build.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sphinx.cmd.build import build_main

DOCS = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; the exit status is Sphinx's."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--out", type=Path, default=DOCS / "_build" / "html")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    args = parser.parse_args(argv)
    doctrees = args.out.parent / ".doctrees"
    options = ["-W", "--keep-going", "-E", "-b", "html", "-d", str(doctrees)]
    status = build_main([*options, *(["-q"] if args.quiet else []), str(DOCS), str(args.out)])
    if status == 0:
        print(f"docs built: {args.out / 'index.html'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
