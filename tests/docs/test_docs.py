"""The built docs are complete: every route, error code and environment variable is in them.

The docs are built once per session with ``docs/build.py`` (the same command
as ``make docs``: OpenAPI export, then ``sphinx-build -W``) into a temporary
directory. What must be documented is found here independently of the docs'
own generators: routes from each app's URL map, error codes and environment
variables by searching the source with regular expressions.
"""

from __future__ import annotations

import html
import importlib
import importlib.util
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 240
SERVICES = {
    "customers": "customers_service",
    "inventory": "inventory_service",
    "sales": "sales_service",
    "reviews": "reviews_service",
}
#: Swagger UI's own files: served, but not API.
ASSET_ENDPOINTS = {"static", "swagger_static"}
CODE_DIRS = ["shopkit", *SERVICES.values(), "seeder"]
TOOL_DIRS = ["bench", "tests"]


def _present() -> dict[str, str]:
    """Service packages of this checkout (regular packages with migrations, as the suite uses)."""
    return {
        name: package
        for name, package in SERVICES.items()
        if (ROOT / package / "__init__.py").is_file() and (ROOT / package / "migrations").is_dir()
    }


PRESENT = _present()


@pytest.fixture(scope="session")
def built_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML docs, built once per session exactly as ``make docs`` builds them."""
    base = tmp_path_factory.mktemp("docs")
    out = base / "html"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "docs" / "build.py"),
            "--quiet",
            "--out",
            str(out),
            "--generated",
            str(base / "generated"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"docs build failed:\n{result.stdout}\n{result.stderr}"
    return out


@pytest.fixture(scope="session")
def manifest(built_docs: Path) -> dict[str, Any]:
    """What the export step built."""
    return json.loads((built_docs.parent / "generated" / "manifest.json").read_text())


def _page(built_docs: Path, name: str) -> str:
    return (built_docs / name).read_text(encoding="utf-8")


def _literals(page: str) -> set[str]:
    """The text of every inline literal on a page."""
    found = set()
    for literal in re.findall(r'<code class="docutils literal[^"]*">(.*?)</code>', page, re.S):
        found.add(html.unescape(re.sub(r"<[^>]+>", "", literal)).strip())
    return found


def _operations(page: str) -> dict[tuple[str, str], str]:
    """``(METHOD, path)`` of each documented HTTP operation → its HTML block."""
    blocks = re.split(r'(?=<dt class="sig sig-object http")', page)[1:]
    operations = {}
    for block in blocks:
        signature = re.search(r"<dt[^>]*>(.*?)</dt>", block, re.S)
        assert signature is not None
        text = html.unescape(re.sub(r"<[^>]+>", "", signature.group(1))).replace("¶", "")
        method, path = text.split()
        operations[(method, path)] = block
    return operations


def _app(service: str) -> Any:
    """The service's app, built like the docs export builds it (no database needed)."""
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        export = importlib.import_module("export_openapi")
    finally:
        sys.path.remove(str(ROOT / "docs"))
    return export.build_app(service, SERVICES[service])


def _routes(app: Any) -> set[tuple[str, str]]:
    """Every ``(METHOD, /path/{param})`` the app serves, Swagger UI assets excepted."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ASSET_ENDPOINTS:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((method, path))
    return routes


@pytest.fixture(scope="session")
def app_routes() -> dict[str, set[tuple[str, str]]]:
    """Routes of every present service's app."""
    return {service: _routes(_app(service)) for service in PRESENT}


@pytest.mark.parametrize("service", list(PRESENT))
def test_every_route_is_on_its_service_page(
    built_docs: Path, app_routes: dict[str, set[tuple[str, str]]], service: str
) -> None:
    documented = set(_operations(_page(built_docs, f"api/{service}.html")))
    missing = app_routes[service] - documented
    assert not missing, f"routes of {service} missing from api/{service}.html: {sorted(missing)}"
    foreign = documented - app_routes[service]
    assert not foreign, f"api/{service}.html documents routes {service} lacks: {sorted(foreign)}"


@pytest.mark.parametrize("service", list(PRESENT))
def test_no_service_page_shows_another_service(
    built_docs: Path, app_routes: dict[str, set[tuple[str, str]]], service: str
) -> None:
    page = _page(built_docs, f"api/{service}.html")
    title = re.search(r"<h1>(.*?)<", page)
    assert title is not None and title.group(1).lower().startswith(service)
    documented_paths = {path for _, path in _operations(page)}
    for other, routes in app_routes.items():
        if other == service:
            continue
        unique = {path for _, path in routes} - {path for _, path in app_routes[service]}
        shown = unique & documented_paths
        assert not shown, f"api/{service}.html shows {other}'s paths {sorted(shown)}"


@pytest.mark.parametrize("service", list(PRESENT))
def test_operations_show_access_idempotency_and_bodies(
    built_docs: Path, manifest: dict[str, Any], service: str
) -> None:
    spec = json.loads(
        (built_docs.parent / "generated" / manifest["services"][service]["spec"]).read_text()
    )
    operations = _operations(_page(built_docs, f"api/{service}.html"))
    for path, methods in spec["paths"].items():
        common = methods.get("parameters", [])
        for method, operation in methods.items():
            if method == "parameters":
                continue
            block = operations[(method.upper(), path)]
            names = {p["name"] for p in operation.get("parameters", []) + common}
            assert ("Idempotency-Key" in block) == ("Idempotency-Key" in names), (method, path)
            assert "<strong>Access:</strong>" in block
            if operation.get("security"):
                assert "bearer token" in block, (method, path)
                for role in operation.get("x-roles", []):
                    assert f'<span class="pre">{role}</span>' in block, (method, path, role)
            else:
                assert "public, no token needed" in block, (method, path)
            if "requestBody" in operation:
                assert "Request JSON Object" in block or "Request JSON Array" in block
            for status in operation["responses"]:
                if status.isdigit():
                    assert re.search(rf"<strong>{status}</strong>|>{status} ", block), (
                        method,
                        path,
                        status,
                    )
            error_statuses = [s for s in operation["responses"] if s[:1] in {"4", "5"}]
            if error_statuses:
                assert "application/problem+json" in block, (method, path)


# --- error codes -----------------------------------------------------------------------------

CODE_PATTERNS = [
    r'(?:ProblemError|problem_body|__init__)\(\s*\d{3},\s*"([a-z][a-z0-9_]*)"',
    r'Conflict\(\s*"([a-z][a-z0-9_]*)"',
    r'\bcode="([a-z][a-z0-9_]*)"',
    r'\bcode: str = "([a-z][a-z0-9_]*)"',
    r'\bcode, detail = "([a-z][a-z0-9_]*)"',
    r'DEFAULT_CODES\.get\([^,]+,\s*"([a-z][a-z0-9_]*)"\)',
]


def _source(*dirs: str) -> dict[Path, str]:
    files = {}
    for name in dirs:
        base = ROOT / name
        for path in sorted(base.rglob("*.py")) if base.is_dir() else []:
            rel = path.relative_to(ROOT).parts
            if "migrations" in rel or rel[:2] == ("tests", "docs"):
                continue
            files[path] = path.read_text(encoding="utf-8")
    return files


def _emitted_codes() -> set[str]:
    codes = set()
    for text in _source(*CODE_DIRS).values():
        for pattern in CODE_PATTERNS:
            codes.update(re.findall(pattern, text))
    from shopkit.errors import DEFAULT_CODES

    codes.update(DEFAULT_CODES.values())
    if importlib.util.find_spec("sales_service") is not None:
        routes = importlib.import_module("sales_service.routes")
        codes.update(getattr(routes, "FAILURE_STATUS", {}))
    return codes


def test_every_error_code_is_documented(built_docs: Path) -> None:
    codes = _emitted_codes()
    assert {"insufficient_funds", "validation_error", "not_found"} <= codes  # the search works
    documented = _literals(_page(built_docs, "errors.html"))
    missing = sorted(codes - documented)
    assert not missing, f"error codes missing from errors.html: {missing}"


# --- environment variables -------------------------------------------------------------------

ENV_PATTERNS = [
    r'os\.environ\.get\(\s*"([A-Z][A-Z0-9_]*)"',
    r'os\.environ\[\s*"([A-Z][A-Z0-9_]*)"\s*\]',
    r'os\.getenv\(\s*"([A-Z][A-Z0-9_]*)"',
    r'\b_env\w*\(\s*"([A-Z][A-Z0-9_]*)"',
    r'(?m)^\s*[A-Z0-9_]*_ENV\s*(?::\s*str\s*)?=\s*"([A-Z][A-Z0-9_]*)"',
    r'\benvvar=\s*\[?\s*"([A-Z][A-Z0-9_]*)"',
]


def _environment_variables() -> set[str]:
    names = set()
    for text in _source(*CODE_DIRS, *TOOL_DIRS).values():
        for pattern in ENV_PATTERNS:
            names.update(re.findall(pattern, text))
    from shopkit.config import SERVICE_PORTS

    # shopkit.config reads f"{service.upper()}_URL" for each service.
    names.update(f"{service.upper()}_URL" for service in SERVICE_PORTS)
    return names


def test_every_environment_variable_is_documented(built_docs: Path) -> None:
    names = _environment_variables()
    expected = {"DATABASE_URL", "WEB_CONCURRENCY", "SALES_CRASH_AFTER", "TEST_DATABASE_URL"}
    assert expected <= names  # the search works
    documented = _literals(_page(built_docs, "configuration.html"))
    missing = sorted(names - documented)
    assert not missing, f"environment variables missing from configuration.html: {missing}"


# --- the seeder ------------------------------------------------------------------------------


def test_seeder_page_lists_its_commands_or_says_why_not(built_docs: Path) -> None:
    page = _page(built_docs, "seeder.html")
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", DeprecationWarning
            )  # sphinxcontrib-openapi's jsonschema
            shop_docs = importlib.import_module("shop_docs")
    finally:
        sys.path.remove(str(ROOT / "docs" / "_ext"))
    target = shop_docs.find_seeder_cli()
    if target is None:
        assert 'class="admonition' in page  # the short note instead of the reference
        return
    module, _, attribute = target.partition(":")
    group = getattr(importlib.import_module(module), attribute)
    for name in getattr(group, "commands", {}):
        assert re.search(rf">{re.escape(name)}<", page), f"seeder command {name} not documented"
