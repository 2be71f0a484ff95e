"""What every service's OpenAPI document says beyond its routes' own declarations.

Built into the runtime document (``GET /openapi.json``), so Swagger UI, a
generated client and the docs all read the same thing.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from flask import Flask
from flask_smorest import Api

from shopkit.errors import DEFAULT_CODES, PROBLEM_TYPE_BASE
from shopkit.problems import MEMBERS, PROBLEMS, ProblemSpec

#: The ``headers`` of a documented 201: where the created resource lives.
LOCATION_HEADER: dict[str, Any] = {
    "Location": {
        "description": "The path of the created resource.",
        "schema": {"type": "string"},
        "required": True,
    }
}

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
METHODS = ("get", "put", "post", "patch", "delete")
#: Routes that serve Swagger UI's files: assets, not API.
ASSET_ENDPOINTS = {"static", "swagger_static"}
OPERATIONS_TAG = "operations"
IDEMPOTENCY_HEADER = "idempotency-key"
EXAMPLE_REQUEST_ID = "9f1c2e7a4b0d4c55"

_PLAIN = {"type": "string"}
_STATUS_BODY = {
    "type": "object",
    "properties": {"status": _PLAIN, "service": _PLAIN, "schema_revision": _PLAIN},
}

#: The routes every service serves outside flask-smorest, documented here.
COMMON_OPERATIONS: dict[str, dict[str, Any]] = {
    "/healthz": {
        "summary": "Liveness: the process answers.",
        "responses": {
            "200": {
                "description": "Alive.",
                "content": {"application/json": {"schema": _STATUS_BODY}},
            }
        },
    },
    "/readyz": {
        "summary": "Readiness: the database answers and its schema is current.",
        "responses": {
            "200": {
                "description": "Ready to serve.",
                "content": {"application/json": {"schema": _STATUS_BODY}},
            },
            "503": {"description": "`not_ready`: the database is unreachable or not migrated."},
        },
    },
    "/metrics": {
        "summary": "Prometheus metrics: request counts and latencies per endpoint.",
        "responses": {
            "200": {
                "description": "Prometheus text exposition format.",
                "content": {"text/plain": {"schema": _PLAIN}},
            }
        },
    },
    "/openapi.json": {
        "summary": "This service's OpenAPI 3 document.",
        "responses": {
            "200": {
                "description": "The OpenAPI document.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    },
    "/docs": {
        "summary": "Swagger UI for this service (its assets are served locally: works offline).",
        "responses": {
            "200": {
                "description": "The Swagger UI page.",
                "content": {"text/html": {"schema": _PLAIN}},
            }
        },
    },
    "/docs/": {
        "summary": "Leads to Swagger UI at `/docs`.",
        "responses": {
            "308": {
                "description": "Redirect to `/docs`.",
                "headers": {"Location": {"schema": _PLAIN, "required": True}},
            }
        },
    },
}


def problem_schema() -> dict[str, Any]:
    """The ``Problem`` schema: RFC 9457 members, the ``code`` and every extension member.

    Which extension members a given ``code`` carries is in each member's
    description and in the error responses' ``x-problem-codes``.
    """
    carriers: dict[str, list[str]] = {name: [] for name in MEMBERS}
    for spec in PROBLEMS.values():
        for member in spec.members:
            carriers[member].append(spec.code)
    extensions = {
        name: {
            **schema,
            "description": f"{schema['description']} With "
            + ", ".join(f"`{code}`" for code in carriers[name])
            + ".",
        }
        for name, schema in MEMBERS.items()
    }
    return {
        "type": "object",
        "description": "RFC 9457 problem details, the body of every error response. Beside "
        "the standard members, a problem carries only the extension members its `code` "
        "declares (see each member).",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string", "example": PROBLEM_TYPE_BASE + "not_found"},
            "title": {"type": "string", "example": "Not Found"},
            "status": {"type": "integer", "example": 404},
            "detail": {"type": "string"},
            "code": {
                "type": "string",
                "enum": sorted(PROBLEMS),
                "description": "Machine-readable error code (see the error-code reference).",
            },
            "instance": {"type": "string", "description": "The path that was requested."},
            "request_id": {"type": "string", "description": "The request's `X-Request-ID`."},
            **extensions,
        },
        "additionalProperties": False,
    }


_ROLE = re.compile(r":[a-z]+:`~?(?:[\w.]+\.)?([^`<>]+?)`")


def markdown(text: str) -> str:
    """reStructuredText literals and roles as Markdown code spans (for Swagger UI)."""
    text = _ROLE.sub(r"`\1`", text)
    return re.sub(r"``(.+?)``", r"`\1`", text)


def _to_markdown(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("description", "summary") and isinstance(value, str):
                node[key] = markdown(value)
            else:
                _to_markdown(value)
    elif isinstance(node, list):
        for item in node:
            _to_markdown(item)


def _codes_in(text: str, status: str) -> list[str]:
    """Backquoted registered codes of ``text`` that are answered with ``status``."""
    found: list[str] = []
    for word in re.findall(r"`{1,2}([a-z][a-z0-9_]*)`{1,2}", text or ""):
        spec = PROBLEMS.get(word)
        if spec and status.isdigit() and int(status) in spec.statuses and word not in found:
            found.append(word)
    return found


def _implied_codes(path: str, operation: dict[str, Any]) -> dict[str, list[str]]:
    """Codes every operation with these traits can answer, whatever its routes say."""
    implied: dict[str, list[str]] = {}
    if "requestBody" in operation:
        implied.setdefault("400", []).extend(["malformed_json", "too_deeply_nested"])
        implied.setdefault("413", []).append("payload_too_large")
        implied.setdefault("415", []).append("unsupported_media_type")
        implied.setdefault("422", []).append("validation_error")
    if any(p.get("in") == "query" for p in operation.get("parameters", [])):
        implied.setdefault("422", []).append("validation_error")
    key = next(
        (
            p
            for p in operation.get("parameters", [])
            if p.get("in") == "header" and p.get("name", "").lower() == IDEMPOTENCY_HEADER
        ),
        None,
    )
    if key is not None:
        if key.get("required"):
            implied.setdefault("400", []).append("idempotency_key_required")
        implied.setdefault("400", []).append("invalid_idempotency_key")
        implied.setdefault("409", []).append("idempotency_key_in_use")
        implied.setdefault("422", []).append("idempotency_key_reused")
    security = operation.get("security") or []
    if any(requirement == {} for requirement in security):  # optional: anonymous is fine
        implied.setdefault("401", []).extend(["invalid_token", "token_expired"])
    elif security:
        implied.setdefault("401", []).extend(
            ["unauthorized", "invalid_token", "token_expired", "account_inactive"]
        )
        implied.setdefault("403", []).append("forbidden")
        if operation.get("x-shop-callers"):
            implied["403"].append("forbidden_caller")
    if "{" in path:  # a path parameter that matches nothing is 404 too
        implied.setdefault("404", []).append("not_found")
    # Any request that waited past its deadline before it could start (shopkit.deadline).
    implied.setdefault("503", []).append("request_expired")
    return implied


def _describe(codes: list[str]) -> str:
    def member_list(spec: ProblemSpec) -> str:
        if not spec.members:
            return ""
        return " Members: " + ", ".join(f"`{m}`" for m in spec.members) + "."

    return "\n".join(f"- `{c}`: {PROBLEMS[c].title}{member_list(PROBLEMS[c])}" for c in codes)


def _example(status: int, code: str, path: str) -> dict[str, Any]:
    example: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": PROBLEMS[code].title,
        "code": code,
        "instance": path,
        "request_id": EXAMPLE_REQUEST_ID,
    }
    if code == "validation_error":
        example["errors"] = {"page_size": ["Must be greater than or equal to 1."]}
    return example


def _document_errors(path: str, operation: dict[str, Any]) -> None:
    """Give every error response its problem body, its codes and an example."""
    responses = operation.setdefault("responses", {})
    codes: dict[str, list[str]] = {}
    for status, response in responses.items():
        if status[:1] in {"4", "5"}:
            codes[status] = _codes_in(response.get("description", ""), status)
    described = operation.get("description", "")
    for status, code in re.findall(r"\b([45]\d\d)\s+`{1,2}([a-z][a-z0-9_]*)`{1,2}", described):
        if code in _codes_in(f"`{code}`", status) and code not in codes.get(status, []):
            codes.setdefault(status, []).append(code)
    for status, implied in _implied_codes(path, operation).items():
        merged = codes.setdefault(status, [])
        merged.extend(code for code in implied if code not in merged)
    for status, status_codes in codes.items():
        if not status_codes:
            status_codes.append(DEFAULT_CODES.get(int(status), "http_error"))
        if status == "422" and "validation_error" in status_codes:  # the usual one first
            status_codes.insert(0, status_codes.pop(status_codes.index("validation_error")))
        response = responses.setdefault(status, {})
        if "$ref" in response:
            response.clear()  # the shared component says less than this
        own = response.get("description") or HTTPStatus(int(status)).phrase + "."
        response["description"] = own + "\n\n" + _describe(status_codes)
        response["x-problem-codes"] = status_codes
        response["content"] = {
            PROBLEM_MEDIA_TYPE: {
                "schema": dict(PROBLEM_REF),
                "example": _example(int(status), status_codes[0], path),
            }
        }
    operation["responses"] = dict(sorted(responses.items(), key=lambda i: _status_key(i[0])))
    operation["x-error-codes"] = {
        status: codes[status] for status in sorted(codes, key=_status_key) if codes[status]
    }


def _status_key(status: str) -> tuple[int, str]:
    return (int(status), "") if status.isdigit() else (1000, status)


def openapi_path(rule: str) -> str:
    """``/sales/<uuid:sale_id>`` → ``/sales/{sale_id}`` (the OpenAPI path template)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _add_common_operations(doc: dict[str, Any], app: Flask) -> None:
    paths = doc.setdefault("paths", {})
    added = False
    for rule in app.url_map.iter_rules():
        path = openapi_path(rule.rule)
        if rule.endpoint in ASSET_ENDPOINTS or path not in COMMON_OPERATIONS:
            continue
        if "get" in paths.get(path, {}):
            continue
        operation = copy.deepcopy(COMMON_OPERATIONS[path])
        operation.update(tags=[OPERATIONS_TAG], operationId=rule.endpoint.replace(".", "_"))
        paths.setdefault(path, {})["get"] = operation
        added = True
    if added:
        doc.setdefault("tags", []).append(
            {
                "name": OPERATIONS_TAG,
                "description": "Health, metrics and API description, served by every service.",
            }
        )


def finalize(doc: dict[str, Any], app: Flask) -> dict[str, Any]:
    """The runtime document: ``doc`` (apispec's) with everything the answers need said.

    Adds the common routes, the ``Problem`` schema with every extension member,
    each error response's problem body with its codes (``x-problem-codes``, and
    ``x-error-codes`` per operation), and turns reST literals into Markdown.
    """
    doc = copy.deepcopy(doc)
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = problem_schema()
    for response in components.get("responses", {}).values():
        content = response.get("content", {})
        if "application/json" in content:
            content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    _add_common_operations(doc, app)
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            if method in METHODS:
                _document_errors(path, operation)
    _to_markdown(doc)
    return doc


def install(api: Api, app: Flask) -> None:
    """Make ``api.spec.to_dict()`` answer the finalized document (built once, on first use).

    Everything that reads the document (``/openapi.json``, Swagger UI, the
    docs' export) calls ``to_dict``; routes registered after this call (health,
    metrics) are in it because it is built lazily.
    """
    plain: Callable[[], dict[str, Any]] = api.spec.to_dict
    built: list[dict[str, Any]] = []

    def to_dict() -> dict[str, Any]:
        if not built:
            built.append(finalize(plain(), app))
        return copy.deepcopy(built[0])

    api.spec.to_dict = to_dict
