"""Property-based testing of a service's own OpenAPI document with schemathesis + hypothesis."""

from __future__ import annotations

from typing import Any

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings


def fuzz_operations(
    app: Flask, headers: dict[str, str], *, max_examples: int = 25
) -> dict[str, list[int]]:
    """Send generated requests to every documented operation; fail on any 5xx.

    Errors must also be problem+json. Returns ``{operation label: statuses answered}``
    (one status per example run).
    """
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    return {
        operation.label: fuzz_operation(operation, headers, max_examples=max_examples)
        for operation in (result.ok() for result in schema.get_all_operations())
    }


def fuzz_operation(operation: Any, headers: dict[str, str], *, max_examples: int = 25) -> list[int]:
    """Send up to ``max_examples`` generated requests to one schemathesis ``operation``.

    Each request carries ``headers``. Fails on any 5xx, and on an error response
    that is not ``application/problem+json``. Returns the status of each example run.
    """
    label = operation.label
    statuses: list[int] = []

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
        statuses.append(response.status_code)

    check()
    return statuses
