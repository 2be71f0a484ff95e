"""The runtime OpenAPI document says what the answers are (checked on the customers service)."""

from __future__ import annotations

import json
import re
from typing import Any

from flask.testing import FlaskClient

from shopkit.problems import MEMBERS, PROBLEMS


def _spec(customers: FlaskClient) -> dict[str, Any]:
    return customers.get("/openapi.json").get_json()  # type: ignore[no-any-return]


def test_the_problem_schema_declares_every_extension_member(customers: FlaskClient) -> None:
    problem = _spec(customers)["components"]["schemas"]["Problem"]
    assert problem["additionalProperties"] is False
    assert set(MEMBERS) <= set(problem["properties"])
    assert set(problem["properties"]["code"]["enum"]) == set(PROBLEMS)
    assert "`already_exists`" in problem["properties"]["usernames"]["description"]


def test_each_error_response_lists_its_codes_and_their_members(customers: FlaskClient) -> None:
    register = _spec(customers)["paths"]["/customers"]["post"]
    conflict = register["responses"]["409"]
    assert conflict["x-problem-codes"] == ["already_exists"]
    assert "`usernames`" in conflict["description"]
    assert register["x-error-codes"]["415"] == ["unsupported_media_type"]
    assert register["responses"]["201"]["headers"]["Location"]["required"] is True


def test_debits_are_negative_in_the_document_too(customers: FlaskClient) -> None:
    schemas = _spec(customers)["components"]["schemas"]
    for name in ("LedgerEntry", "AuditLedgerEntry"):
        pattern = schemas[name]["properties"]["amount"]["pattern"]
        assert re.search(pattern, "-12.50"), name
    top_up = schemas["Amount"]["properties"]["amount"]["pattern"]
    assert [bool(re.search(top_up, v)) for v in ("0.00", "-1", "5", "100000.00", "100000.01")] == [
        False,
        False,
        True,
        True,
        False,
    ]


def test_server_rules_are_in_the_document(customers: FlaskClient) -> None:
    spec = _spec(customers)
    full_name = spec["components"]["schemas"]["Register"]["properties"]["full_name"]
    assert re.search(full_name["pattern"], "   ") is None  # blank is refused
    charge = spec["paths"]["/customers/{username}/wallet/charge"]["post"]
    key = next(p for p in charge["parameters"] if p["name"] == "Idempotency-Key")
    assert key["schema"]["maxLength"] == 200
    assert re.fullmatch(key["schema"]["pattern"], "abc:1") is not None
    assert re.fullmatch(key["schema"]["pattern"], "a b") is None


def test_descriptions_are_markdown_not_restructured_text(customers: FlaskClient) -> None:
    text = json.dumps(_spec(customers))
    assert "``" not in text
    assert ":class:`" not in text and ":func:`" not in text
