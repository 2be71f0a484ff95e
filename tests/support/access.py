"""The security tests' helpers: the documented access matrix and one caller per identity."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from shopkit.auth import SERVICES
from shopkit.config import PROJECT_ROOT

#: The documented access matrix (docs/auth.rst renders the same file).
MATRIX = PROJECT_ROOT / "docs" / "access-matrix.csv"
PEOPLE = ("anonymous", "customer", "other_customer", "admin")
IDENTITIES = PEOPLE + SERVICES


def read_matrix(path: Path = MATRIX) -> dict[tuple[str, str, str], dict[str, str]]:
    """``{(service, METHOD, path): {identity: "yes" | "no" | "own"}}`` from the CSV."""
    with path.open(newline="") as handle:
        return {
            (row["service"], row["method"], row["path"]): {i: row[i] for i in IDENTITIES}
            for row in csv.DictReader(handle)
        }


class NobodyDeactivated:
    """Stands in for the customers service's list of deactivated accounts: empty."""

    def contains(self, customer_id: int) -> bool:
        return False


@dataclass
class Callers:
    """An ``Authorization`` header per identity, and the two customers' usernames."""

    headers: dict[str, dict[str, str]]
    customer: str
    other_customer: str
