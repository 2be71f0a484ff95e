"""``python -m devstack``: start the whole shop (``make run``), or print a database URL.

- ``python -m devstack`` (or ``run``): the launcher, as ``make run`` and ``shop-run``;
- ``python -m devstack database-url [SERVICE]``: start (or join) the embedded
  PostgreSQL under ``SHOP_DATA_DIR`` and print its URL, as ``SERVICE``'s own
  role when given: what one service run by hand needs as ``DATABASE_URL``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from devstack import launcher, roles
from shopkit.config import Settings
from shopkit.registry import SERVICES


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="start everything (make run); Ctrl-C stops it")
    url = commands.add_parser("database-url", help="print the embedded database's URL")
    url.add_argument("service", nargs="?", choices=[s.name for s in SERVICES if s.has_database])
    args = parser.parse_args(argv)
    if args.command == "database-url":
        data_dir = Path(Settings.from_env("launcher").data_dir) / "pg"
        print(roles.database_url(data_dir, args.service))
        return
    launcher.main()


if __name__ == "__main__":
    main()
