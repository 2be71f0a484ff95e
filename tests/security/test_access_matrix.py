"""Every operation of every service, called by every kind of caller, against the matrix.

``docs/access-matrix.csv`` says who may call what (docs/auth.rst shows it).
This walks each service's own OpenAPI document, so an operation that is not
in the matrix, or a matrix row no service has, fails the suite; and each
identity's answer must be a refusal (401/403) exactly where the matrix says
``no``. ``own`` means the customer on their own account; the other customer
is then refused (403, or 404 where a resource's existence is not revealed).
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from shopkit.auth import SERVICES
from tests.support.access import IDENTITIES, Callers, concrete_path, operations, read_matrix
from tests.support.identity import customer_payload

#: Valid bodies where ownership is checked after the body is read: the other customer
#: must be refused for who they are, not for a malformed body.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/customers/{username}"): {"age": 40},
    ("POST", "/customers/{username}/password"): {
        "current_password": customer_payload()["password"],
        "new_password": "another-long-password",
    },
    ("POST", "/customers/{username}/wallet/charge"): {"amount": "1.00"},
    ("PATCH", "/reviews/{review_id}"): {"rating": 3},
}


def call(app: Flask, method: str, template: str, path: str, headers: dict[str, str]) -> Any:
    body: Any = None
    if (method, template) in VALID_BODIES:
        body = VALID_BODIES[(method, template)]
    elif method in ("POST", "PUT"):
        body = {}
    elif method == "PATCH":
        body = {"no_such_field": 1}  # not empty (that is refused before any role check)
    return app.test_client().open(path, method=method, json=body, headers=headers)


def test_the_matrix_lists_every_operation_and_nothing_else(service_apps: dict[str, Flask]) -> None:
    documented = {
        (service, method, path)
        for service, app in service_apps.items()
        for method, path, _ in operations(app)
    }
    matrix = set(read_matrix())
    assert documented - matrix == set(), "operations without an access rule"
    assert matrix - documented == set(), "access rules for operations that do not exist"


def test_every_identity_gets_what_the_matrix_says(
    service_apps: dict[str, Flask], callers: Callers
) -> None:
    matrix = read_matrix()
    wrong = []
    walk = [(service, app, *op) for service, app in service_apps.items() for op in operations(app)]
    # Deactivating the customer comes last: their token is refused everywhere after it.
    walk.sort(key=lambda item: (item[2], item[3]) == ("DELETE", "/customers/{username}"))
    for service, app, method, path, operation in walk:
        rule = matrix[(service, method, path)]
        url = concrete_path(path, operation, callers.customer)
        for who in IDENTITIES:
            response = call(app, method, path, url, callers.headers[who])
            refused_with = {401, 403}
            if who == "other_customer" and rule["customer"] == "own":
                refused_with.add(404)
            refused = response.status_code in refused_with
            expected_refusal = rule[who] == "no"
            if refused != expected_refusal:
                wrong.append(f"{who:>14} {method} {service}{path}: {response.status_code}")
            elif refused and who in SERVICES:
                # A service token where another service is expected is named as such.
                expected_code = "forbidden_caller" if "/internal/" in path else "forbidden"
                if response.get_json()["code"] != expected_code:
                    wrong.append(f"{who:>14} {method} {service}{path}: not {expected_code}")
    assert wrong == [], "\n".join(wrong)
