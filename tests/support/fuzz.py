"""Property-based testing of a service's own OpenAPI document with schemathesis + hypothesis."""

from __future__ import annotations

from typing import Any

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings


def fuzz_operations(
    app: Flask, headers: dict[str, str], *, max_examples: int = 25
) -> dict[str, int]:
    """Send generated requests to every documented operation; fail on any 5xx.

    Errors must also be problem+json. Returns ``{operation label: examples run}``.
    """
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    counts: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = operation.label
        _fuzz_one(operation, label, headers, counts, max_examples)
    return counts


def _fuzz_one(
    operation: Any, label: str, headers: dict[str, str], counts: dict[str, int], max_examples: int
) -> None:
    """Run the generated cases of one operation."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: Any) -> None:
        response = case.call(headers=headers)
        assert response.status_code < 500, (label, case.body, case.query, response.text[:500])
        if response.status_code >= 400:
            lowered = {k.lower(): v for k, v in response.headers.items()}
            content_type = lowered.get("content-type", [""])
            content_type = content_type[0] if isinstance(content_type, list) else content_type
            assert content_type.startswith("application/problem+json"), (label, content_type)
        counts[label] = counts.get(label, 0) + 1

    check()
