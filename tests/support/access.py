"""The security tests' helpers: the documented access matrix, one caller per identity, and
every operation of a service's OpenAPI document with its path filled in."""

from __future__ import annotations

import csv
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask

from shopkit.auth import SERVICES
from shopkit.config import PROJECT_ROOT

#: The documented access matrix (docs/auth.rst renders the same file).
MATRIX = PROJECT_ROOT / "docs" / "access-matrix.csv"
PEOPLE = ("anonymous", "customer", "other_customer", "admin")
IDENTITIES = PEOPLE + SERVICES
#: The HTTP methods of an OpenAPI path item.
METHODS = ("get", "post", "put", "patch", "delete")


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


def operations(app: Flask) -> list[tuple[str, str, dict[str, Any]]]:
    """``(METHOD, path, operation)`` of every operation in the app's OpenAPI document."""
    spec = app.test_client().get("/openapi.json").get_json()
    found = []
    for path, item in spec["paths"].items():
        shared = item.get("parameters", [])
        for method in METHODS:
            if method in item:
                operation = dict(item[method])
                operation["parameters"] = shared + operation.get("parameters", [])
                found.append((method.upper(), path, operation))
    return found


def concrete_path(path: str, operation: dict[str, Any], username: str) -> str:
    """The path with its parameters filled: the customer's username, unknown ids."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        spec: dict[str, Any] = next(
            (p.get("schema", {}) for p in operation["parameters"] if p.get("name") == name), {}
        )
        if spec.get("type") == "integer":
            return "987654"
        if spec.get("format") == "uuid":
            return str(uuid.uuid4())
        return username

    return re.sub(r"\{([^}]+)\}", value, path)
