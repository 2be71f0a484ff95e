"""Export every service's OpenAPI document for the docs: ``python docs/export_openapi.py OUT``.

Each service package present in the checkout is built with its own
``create_app()`` (no database is touched: the URL points at a port where
nothing listens and the engine connects lazily; the sales recovery thread is
off) and ``<service>.json`` is written to ``OUT`` together with
``manifest.json``, which says which services were exported and why any was
skipped. The document is the app's own ``/openapi.json``, enriched with
facts read from the app and the code:

* routes the app serves but does not describe (``/healthz``, ``/readyz``,
  ``/metrics``, ``/openapi.json``, ``/docs``) are added, so the reference
  lists every route of the URL map (Swagger UI asset routes excepted); their
  response shapes are the one hand-written part (:data:`COMMON_OPERATIONS`),
  and any other undescribed route still appears, with its docstring;
* each protected operation gets ``x-roles``, the roles its
  :func:`shopkit.auth.requires` decorator admits;
* error responses are ``application/problem+json`` with the problem schema
  and an example, and the statuses every such operation can answer
  (400 for malformed JSON or a bad ``Idempotency-Key``, 401/403 for tokens
  and roles, 404 for path parameters, 409/422 for idempotency keys) are added;
* ``x-error-codes`` lists, per status, the problem ``code`` values: the ones
  the route's documentation names (kept only when the code base really
  raises them) plus the ones implied by the facts above.

A package that cannot be imported or built (a service still being written)
is skipped and logged; ``--strict`` makes that an error instead.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import inspect
import json
import logging
import re
import sys
import traceback
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "docs" / "_ext")]

import shop_sources  # noqa: E402 (needs the path above)

log = logging.getLogger("export_openapi")

#: A URL where no database listens: building an app never connects, and if
#: something did try it would fail at once instead of starting PostgreSQL.
DOCS_DATABASE_URL = "postgresql+psycopg2://docs@127.0.0.1:1/docs"
#: Routes that serve Swagger UI's files: assets, not API.
ASSET_ENDPOINTS = {"static", "swagger_static"}
METHODS = ("get", "put", "post", "patch", "delete")
PROBLEM_MEDIA_TYPE = "application/problem+json"
OPERATIONS_TAG = "operations"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EXAMPLE_REQUEST_ID = "9f1c2e7a4b0d4c55"
IDEMPOTENCY_DESCRIPTION = (
    "Makes a retry safe: the first request with a key runs, a repeat replays its stored "
    "answer (with ``Idempotent-Replayed: true``), the same key with a different request is "
    "422 ``idempotency_key_reused`` and a key still in flight is 409 ``idempotency_key_in_use``."
)

#: Operations for the routes every service serves outside flask-smorest. The
#: summary comes from the view's docstring when it has one.
COMMON_OPERATIONS: dict[str, dict[str, Any]] = {
    "/healthz": {
        "summary": "Liveness: the process answers.",
        "responses": {
            "200": {
                "description": "Alive.",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "string", "example": "ok"},
                                "service": {"type": "string"},
                            },
                        }
                    }
                },
            }
        },
    },
    "/readyz": {
        "summary": "Readiness: the database answers and its schema is current.",
        "responses": {
            "200": {
                "description": "Ready to serve.",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "string", "example": "ready"},
                                "service": {"type": "string"},
                                "schema_revision": {"type": "string"},
                            },
                        }
                    }
                },
            },
            "503": {
                "description": "`not_ready`: the database is unreachable or not migrated "
                "(with `Retry-After`).",
            },
        },
    },
    "/metrics": {
        "summary": "Prometheus metrics: request counts and latencies per endpoint.",
        "responses": {
            "200": {
                "description": "Prometheus text exposition format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
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
                "content": {"text/html": {"schema": {"type": "string"}}},
            }
        },
    },
}


def openapi_path(rule: str) -> str:
    """``/sales/<uuid:sale_id>`` → ``/sales/{sale_id}`` (the OpenAPI path template)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def api_routes(app: Any) -> list[tuple[str, str, str]]:
    """``(method, openapi path, endpoint)`` of every route of ``app`` but the asset routes."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ASSET_ENDPOINTS:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method.lower(), openapi_path(rule.rule), rule.endpoint))
    return routes


def _roles_of(view: Any) -> list[str] | None:
    """The roles admitted by the view's :func:`shopkit.auth.requires`, if it has one."""
    func = view
    for _ in range(50):
        code = getattr(func, "__code__", None)
        if code is not None and code.co_qualname.startswith("requires.") and func.__closure__:
            roles = inspect.getclosurevars(func).nonlocals.get("roles")
            return list(roles) if roles is not None else None
        func = getattr(func, "__wrapped__", None)
        if func is None:
            return None
    return None


def _summary_of(view: Any) -> str:
    doc = inspect.getdoc(view) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip()


def build_app(service: str, package: str) -> Any:
    """The service's app, built as in production but without touching any database."""
    from shopkit.config import Settings  # noqa: PLC0415 (after sys.path is set)

    module = importlib.import_module(package)
    settings = Settings.from_env(
        service,
        database_url=DOCS_DATABASE_URL,
        log_level="ERROR",
        # Settings only: they appear nowhere in the document.
        admin_password="docs-export",  # noqa: S106
        service_client_secret="docs-export",  # noqa: S106
        recovery_interval_s=0,
    )
    return module.create_app({"SETTINGS": settings})


def _problem_example(
    status: str, code: str | None, known: dict[str, Any], path: str, package: str
) -> dict[str, Any]:
    number = int(status) if status.isdigit() else 500
    code = code or default_code(number)
    detail = _example_detail(known[code].details_by_place if code in known else [], package)
    example: dict[str, Any] = {
        "type": f"https://shop.example/problems/{code}",
        "title": HTTPStatus(number).phrase,
        "status": number,
        "detail": detail or HTTPStatus(number).description,
        "code": code,
        "instance": path,
        "request_id": EXAMPLE_REQUEST_ID,
    }
    if code == "validation_error":
        example["errors"] = {
            "page_size": ["Must be greater than or equal to 1 and less than or equal to 100."]
        }
    return example


def _example_detail(details: list[tuple[str, str]], package: str) -> str:
    """A ``detail`` the code really sends: this service's first, then shopkit's, then any.

    Sentences without ``{placeholders}`` are preferred.
    """
    for wanted in (package, "shopkit", ""):
        for placeholders_ok in (False, True):
            for place, detail in details:
                if place.startswith(wanted) and (placeholders_ok or "{" not in detail):
                    return detail
    return ""


def default_code(status: int) -> str:
    """The ``code`` shopkit gives a status when nothing more specific is known."""
    from shopkit.errors import DEFAULT_CODES  # noqa: PLC0415

    return DEFAULT_CODES.get(status, "http_error")


def _codes_in(text: str, known: dict[str, Any]) -> list[str]:
    """Backquoted words of ``text`` that are real error codes, in order."""
    found = []
    for word in re.findall(r"`{1,2}([a-z][a-z0-9_]*)`{1,2}", text or ""):
        if word in known and word not in found:
            found.append(word)
    return found


def enrich(spec: dict[str, Any], app: Any, known_codes: dict[str, Any], package: str) -> list[str]:
    """Add what the app knows but its document does not say (see the module docstring).

    Returns notes about what was added, for the log.
    """
    notes: list[str] = []
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    problem_ref = {"$ref": "#/components/schemas/Problem"} if "Problem" in schemas else {}
    paths = spec.setdefault("paths", {})

    # 1. Routes served but not described.
    for method, path, endpoint in api_routes(app):
        if method in paths.get(path, {}):
            continue
        view = app.view_functions[endpoint]
        operation = copy.deepcopy(COMMON_OPERATIONS.get(path, {}))
        # Our own views say best what they do; library views (flask-smorest,
        # the Prometheus exporter) get the summary above.
        ours = (getattr(view, "__module__", "") or "").split(".")[0] in shop_sources.CODE_PACKAGES
        summary = _summary_of(view)
        if not ours or not summary:
            summary = operation.get("summary") or summary or endpoint
        operation["summary"] = summary
        operation.setdefault("responses", {"200": {"description": "OK"}})
        operation["tags"] = [OPERATIONS_TAG]
        operation["operationId"] = endpoint
        paths.setdefault(path, {})[method] = operation
        notes.append(f"added undocumented route {method.upper()} {path}")
    if any(
        OPERATIONS_TAG in op.get("tags", [])
        for ops in paths.values()
        for method, op in ops.items()
        if method in METHODS
    ):
        tags = spec.setdefault("tags", [])
        if not any(tag["name"] == OPERATIONS_TAG for tag in tags):
            tags.append(
                {
                    "name": OPERATIONS_TAG,
                    "description": "Health, metrics and API description, served by every "
                    "service (not part of its OpenAPI document).",
                }
            )

    # 2. Per operation: roles, idempotency key, error responses and codes.
    views = {(m, p): app.view_functions[e] for m, p, e in api_routes(app)}
    context = _Context(problem_ref, known_codes, package)
    for path, operations in paths.items():
        path_parameters = [p for p in operations.get("parameters", []) if p.get("in") == "path"]
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            _enrich_operation(path, operation, views.get((method, path)), path_parameters, context)
    return notes


@dataclass(frozen=True)
class _Context:
    """What every operation of one service is enriched with."""

    problem_ref: dict[str, str]
    known_codes: dict[str, Any]
    package: str


def _enrich_operation(
    path: str,
    operation: dict[str, Any],
    view: Any,
    path_parameters: list[dict[str, Any]],
    context: _Context,
) -> None:
    responses = operation.setdefault("responses", {})
    if operation.get("security") and view is not None:
        roles = _roles_of(view)
        if roles is not None:  # requires() with no roles admits any role: []
            operation["x-roles"] = roles
    idempotency = next(
        (
            p
            for p in operation.get("parameters", []) + path_parameters
            if p.get("in") == "header" and p.get("name", "").lower() == IDEMPOTENCY_HEADER.lower()
        ),
        None,
    )
    if idempotency is not None and not idempotency.get("description"):
        idempotency["description"] = IDEMPOTENCY_DESCRIPTION

    codes: dict[str, list[str]] = {
        status: _codes_in(response.get("description", ""), context.known_codes)
        for status, response in responses.items()
        if "$ref" not in response
    }
    described = operation.get("description", "")
    for status, code in re.findall(r"\b([45]\d\d)\s+`{1,2}([a-z][a-z0-9_]*)`{1,2}", described):
        if code in context.known_codes:
            codes.setdefault(status, []).append(code)
    for status, extra in _implied_codes(path, operation, idempotency).items():
        merged = codes.setdefault(status, [])
        merged.extend(code for code in extra if code not in merged)

    _add_problem_responses(path, responses, codes, context)
    operation["responses"] = dict(sorted(responses.items(), key=lambda item: _status_key(item[0])))
    operation["x-error-codes"] = {
        status: status_codes
        for status, status_codes in sorted(codes.items(), key=lambda i: _status_key(i[0]))
        if status_codes
    }


def _implied_codes(
    path: str, operation: dict[str, Any], idempotency: dict[str, Any] | None
) -> dict[str, list[str]]:
    """Codes every operation with these traits can answer with, whatever its code says."""
    implied: dict[str, list[str]] = {}
    if "application/json" in operation.get("requestBody", {}).get("content", {}):
        implied.setdefault("400", []).append("malformed_json")
    if idempotency is not None:
        if idempotency.get("required"):
            implied.setdefault("400", []).append("idempotency_key_required")
        implied.setdefault("400", []).append("invalid_idempotency_key")
        implied.setdefault("409", []).append("idempotency_key_in_use")
        implied.setdefault("422", []).append("idempotency_key_reused")
    security = operation.get("security") or []
    if any(requirement == {} for requirement in security):  # optional: anonymous is fine
        implied.setdefault("401", []).extend(["invalid_token", "token_expired"])
    elif security:
        implied.setdefault("401", []).extend(["unauthorized", "invalid_token", "token_expired"])
        implied.setdefault("403", []).append("forbidden")
    if "{" in path:  # a path parameter that matches nothing is 404 too
        implied.setdefault("404", []).append("not_found")
    if "422" in operation.get("responses", {}):
        implied.setdefault("422", []).insert(0, "validation_error")
    return implied


def _add_problem_responses(
    path: str, responses: dict[str, Any], codes: dict[str, list[str]], context: _Context
) -> None:
    """Add the implied error statuses; make every error response a problem document."""
    for status, status_codes in codes.items():
        if not status_codes and status in responses:
            continue
        response = responses.setdefault(status, {})
        if "$ref" not in response and not response.get("description"):
            response["description"] = ", ".join(f"`{c}`" for c in status_codes) + "."
    for status, response in responses.items():
        is_error = status == "default" or status[:1] in {"4", "5"}
        if not is_error or "$ref" in response:
            continue
        content = response.setdefault("content", {})
        media = content.pop("application/json", None) or content.get(PROBLEM_MEDIA_TYPE) or {}
        if context.problem_ref and "schema" not in media:
            media["schema"] = dict(context.problem_ref)
        first = (codes.get(status) or [None])[0]
        example = _problem_example(status, first, context.known_codes, path, context.package)
        media.setdefault("example", example)
        content[PROBLEM_MEDIA_TYPE] = media


def _status_key(status: str) -> tuple[int, str]:
    return (int(status), "") if status.isdigit() else (1000, status)


def _problem_components(spec: dict[str, Any], known_codes: dict[str, Any], package: str) -> None:
    """Shared error responses (422, default) are problem documents too, with an example."""
    statuses = {"UNPROCESSABLE_ENTITY": "422", "DEFAULT_ERROR": "500"}
    users = {
        name: path
        for path, operations in reversed(list(spec.get("paths", {}).items()))
        for method, operation in operations.items()
        if method in METHODS
        for response in operation.get("responses", {}).values()
        for name in [response.get("$ref", "").rpartition("/")[2]]
    }
    for name, response in spec.get("components", {}).get("responses", {}).items():
        content = response.get("content", {})
        if "application/json" in content:
            content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
        media = content.get(PROBLEM_MEDIA_TYPE)
        if media is not None and name in statuses:
            media.setdefault(
                "example",
                _problem_example(statuses[name], None, known_codes, users.get(name, "/"), package),
            )


def export(out_dir: Path, *, strict: bool = False) -> dict[str, Any]:
    """Write ``<service>.json`` for each present service and ``manifest.json``; return it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.json"):
        stale.unlink()
    known_codes = shop_sources.error_codes()
    manifest: dict[str, Any] = {"services": {}}
    for service, package in shop_sources.SERVICES.items():
        entry: dict[str, Any] = {"package": package}
        manifest["services"][service] = entry
        if service not in shop_sources.present_services():
            entry.update(status="absent", error="the package is not in this checkout")
            log.info("%s: %s is not in this checkout", service, package)
            continue
        try:
            app = build_app(service, package)
            # A deep copy: apispec's dict shares nested objects between operations.
            spec = json.loads(json.dumps(app.extensions["shop_api"].spec.to_dict()))
        except Exception as exc:  # a package being written: skip it, say why
            if strict:
                raise
            entry.update(status="skipped", error=f"{type(exc).__name__}: {exc}")
            log.warning("SKIPPED %s: cannot build %s.create_app(): %s", service, package, exc)
            log.debug("%s", traceback.format_exc())
            continue
        _problem_components(spec, known_codes, package)
        notes = enrich(spec, app, known_codes, package)
        routes = api_routes(app)
        entry.update(
            status="ok",
            spec=f"{service}.json",
            routes=[[method.upper(), path] for method, path, _ in routes],
        )
        (out_dir / f"{service}.json").write_text(json.dumps(spec, indent=2) + "\n")
        log.info(
            "%s: %d paths, %d routes%s",
            service,
            len(spec["paths"]),
            len(routes),
            "".join(f"\n    {note}" for note in notes),
        )
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("out_dir", type=Path, help="where to write <service>.json files")
    parser.add_argument(
        "--strict", action="store_true", help="fail if a present service cannot be built"
    )
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("export_openapi: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    manifest = export(args.out_dir, strict=args.strict)
    exported = [s for s, e in manifest["services"].items() if e["status"] == "ok"]
    if not exported:
        log.error("no service could be exported")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
