"""The built docs are complete and readable: every operation, code, variable, command and module.

The docs are built once per session with ``docs/build.py`` (what ``make docs``
runs: ``sphinx-build -W``) into a temporary directory. What must be documented
is found independently of the docs: operations from each app's OpenAPI
document and URL map, environment variables by searching the source, the
seeder's commands from click, modules by walking the packages.
"""

from __future__ import annotations

import html
import importlib
import json
import pkgutil
import posixpath
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from shopkit.config import SETTING_VARIABLES, Settings
from shopkit.environment import ENVIRONMENT
from shopkit.registry import FRONTENDS, packages

ROOT = Path(__file__).resolve().parents[2]
SERVICES = packages()
#: Routes every service serves outside its OpenAPI document (described on api/index.html).
OPERATIONS_ROUTES = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/asyncapi.json"}
ASSET_ENDPOINTS = {"static", "swagger_static"}
PACKAGES = ["shopkit", "devstack", *SERVICES.values(), "seeder", *packages(FRONTENDS).values()]
#: Not documented as modules: Alembic environments, gunicorn's configuration file.
UNDOCUMENTED_MODULES = re.compile(r"\.migrations(\.|$)|^shopkit\.gunicorn_conf$|\.__main__$")


def _page(built_docs: Path, name: str) -> str:
    return (built_docs / name).read_text(encoding="utf-8")


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def _literals(page: str) -> set[str]:
    """The text of every inline literal on a page."""
    found = re.findall(r'<code class="docutils literal[^"]*">(.*?)</code>', page, re.S)
    return {_text(literal).strip() for literal in found}


def _operations(page: str) -> dict[tuple[str, str], str]:
    """``(METHOD, path)`` of each documented HTTP operation → its HTML block."""
    operations = {}
    for block in re.split(r'(?=<dt class="sig sig-object http")', page)[1:]:
        signature = re.search(r"<dt[^>]*>(.*?)</dt>", block, re.S)
        assert signature is not None
        method, path = _text(signature.group(1)).replace("¶", "").split()
        operations[(method, path)] = block
    return operations


def _spec(service: str) -> dict[str, Any]:
    """The document the build rendered (``docs/_generated``, written by the build)."""
    return json.loads((ROOT / "docs" / "_generated" / f"{service}.json").read_text())


def _spec_operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
        if method in {"get", "put", "post", "patch", "delete"}
    }


@pytest.mark.parametrize("service", list(SERVICES))
def test_every_operation_is_on_its_service_page(built_docs: Path, service: str) -> None:
    operations = _operations(_page(built_docs, f"api/{service}.html"))
    expected = _spec_operations(_spec(service))
    assert len(expected) > 5
    assert set(operations) == set(expected)
    for key, operation in expected.items():
        block = operations[key]
        if operation.get("security") and {} not in operation["security"]:
            assert "Access:" in block, key
            for role in operation["x-roles"]:
                assert (
                    f'<code class="docutils literal notranslate"><span class="pre">{role}</span>'
                    in block
                ), (key, role)
        headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
        assert ("Idempotency-Key" in block) == ("Idempotency-Key" in headers), key
        for status in operation["responses"]:
            if status.isdigit():
                assert f">{status} " in block, (key, status)


@pytest.mark.parametrize("service", list(SERVICES))
def test_routes_outside_the_document_are_described(built_docs: Path, service: str) -> None:
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        export = importlib.import_module("export_openapi")
    finally:
        sys.path.remove(str(ROOT / "docs"))
    app = export.build_app(service, SERVICES[service])
    documented = {path for _, path in _spec_operations(_spec(service))}
    outside = {
        re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in ASSET_ENDPOINTS
    } - documented
    assert outside <= OPERATIONS_ROUTES
    literals = _literals(_page(built_docs, "api/index.html"))
    assert {f"GET {path}" for path in OPERATIONS_ROUTES} <= literals


def test_every_registered_error_code_is_documented(built_docs: Path) -> None:
    from shopkit.problems import PROBLEMS

    assert {"insufficient_funds", "validation_error", "not_found"} <= set(PROBLEMS)
    page = _page(built_docs, "errors.html")
    assert set(PROBLEMS) - _literals(page) == set()
    assert PROBLEMS["sale_pending"].title in _text(page)


# --- environment variables -------------------------------------------------------------------

ENV_PATTERNS = [
    r'os\.environ\.get\(\s*"([A-Z][A-Z0-9_]*)"',
    r'os\.environ\[\s*"([A-Z][A-Z0-9_]*)"\s*\]',
    r'os\.getenv\(\s*"([A-Z][A-Z0-9_]*)"',
    r'\b_env\w*\(\s*"([A-Z][A-Z0-9_]*)"',
    r'\benv_\w+\(\s*"([A-Z][A-Z0-9_]*)"',
    r'(?m)^\s*[A-Z0-9_]*_ENV\s*(?::\s*str\s*)?=\s*"([A-Z][A-Z0-9_]*)"',
    r'\benvvar=\s*\[?\s*"([A-Z][A-Z0-9_]*)"',
]


def _read_variables(*dirs: str) -> set[str]:
    """Every environment variable the code under ``dirs`` reads by name."""
    names: set[str] = set()
    for name in dirs:
        for path in sorted((ROOT / name).rglob("*.py")):
            if "migrations" in path.parts or path.is_relative_to(ROOT / "tests" / "docs"):
                continue
            text = path.read_text(encoding="utf-8")
            for pattern in ENV_PATTERNS:
                names.update(re.findall(pattern, text))
    return names


def test_every_variable_the_code_reads_is_declared_and_documented(built_docs: Path) -> None:
    read = _read_variables(*PACKAGES, "tests")
    assert {"WEB_CONCURRENCY", "SALES_CRASH_AFTER", "GUNICORN_THREADS", "TEST_DATABASE_URL"} <= read
    declared = {variable.name for variable in ENVIRONMENT}
    assert read - declared == set(), "declare them in shopkit/environment.py"
    documented = _literals(_page(built_docs, "configuration.html"))
    assert declared - documented == set()
    bench = _read_variables("bench")
    assert "BENCH_DURATION_S" in bench
    guide = _literals(_page(built_docs, "benchmarks.html")) | _literals(
        _page(built_docs, "benchmarking.html")
    )
    assert bench - declared - guide == set()


@pytest.mark.parametrize("setting", sorted(SETTING_VARIABLES))
def test_settings_read_their_declared_variable(
    setting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    variable = SETTING_VARIABLES[setting]
    for other in SETTING_VARIABLES.values():
        monkeypatch.delenv(other.name, raising=False)
    baseline = getattr(Settings.from_env("docs-test"), setting)
    # A value the default is not: a number two above it, or another URL.
    raw = str(int(baseline) + 2) if isinstance(baseline, int | float) else "http://x.example/7"
    monkeypatch.setenv(variable.name, raw)
    assert getattr(Settings.from_env("docs-test"), setting) != baseline, variable.name


# --- the seeder, the Python API, the README, the architecture ---------------------------------


def test_seeder_page_lists_every_command(built_docs: Path) -> None:
    import click

    from seeder.cli import cli

    page = _page(built_docs, "seeder.html")

    def names(group: click.Command, prefix: str) -> list[str]:
        found = []
        for name, command in getattr(group, "commands", {}).items():
            found.append(f"{prefix}-{name}")
            found += names(command, f"{prefix}-{name}")
        return found

    anchors = names(cli, "python-m-seeder")
    assert "python-m-seeder-faults-set" in anchors
    for anchor in anchors:
        assert f'id="{anchor}"' in page, anchor


def test_every_module_has_its_page(built_docs: Path) -> None:
    modules = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        modules.append(package)
        for info in pkgutil.walk_packages(root.__path__, prefix=package + "."):
            if not UNDOCUMENTED_MODULES.search(info.name):
                modules.append(info.name)
    assert "shopkit.environment" in modules
    missing = [
        m for m in modules if not (built_docs / "python" / "_autosummary" / f"{m}.html").is_file()
    ]
    assert missing == []
    page = _page(built_docs, "python/_autosummary/shopkit.environment.html")
    assert 'id="shopkit.environment.Variable"' in page


def _navigation_targets(built_docs: Path, name: str) -> set[str]:
    """The pages the sidebar's navigation tree of page ``name`` links to, from the docs' root."""
    page = _page(built_docs, name)
    start = page.index('<div class="sidebar-tree">')
    tree = page[start : page.index("</ul>\n\n</div>", start)]
    links = re.findall(r'<li class="toctree-l\d[^"]*"><a class="[^"]*" href="([^"#]*)', tree)
    here = posixpath.dirname(name)
    # The page's own entry links to "#" (an empty path).
    return {posixpath.normpath(posixpath.join(here, link)) if link else name for link in links}


@pytest.mark.parametrize(
    "name", ["_modules/shopkit/events/relay.html", "_modules/seeder/cli.html", "genindex.html"]
)
def test_pages_outside_the_documents_have_the_whole_navigation_with_working_links(
    built_docs: Path, name: str
) -> None:
    """Their navigation tree is built once per directory (docs/_ext/shop_docs.py): each still
    links to every page the documents' navigation has, relative to its own directory."""
    expected = _navigation_targets(built_docs, "saga.html")
    targets = _navigation_targets(built_docs, name)
    assert "python/_autosummary/shopkit.events.relay.html" in targets
    assert targets == expected
    assert all((built_docs / target).is_file() for target in targets)


def test_readme_and_architecture_are_in_the_docs(built_docs: Path) -> None:
    started = _text(_page(built_docs, "getting-started.html"))
    for text in ("make run", "marital_status", "prefer_not_to_say", "ruff format"):
        assert text in started, text
    architecture = _text(_page(built_docs, "architecture.html"))
    for text in ("Trust boundaries", "Idempotency", "REQUEST_DEADLINE", "{sale_id}:debit"):
        assert text in architecture, text
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "../shared" not in readme
    assert "docs/architecture.rst" in readme


def test_readme_is_short_and_draws_the_docs_picture() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    picture = re.search(r"```mermaid\n(.*?)```", readme, re.S)
    assert picture is not None
    overview = (ROOT / "docs" / "overview.rst").read_text(encoding="utf-8")
    block = re.search(r":class: mermaid-source\n\n(.*?)\n\n(?=\S)", overview, re.S)
    assert block is not None
    source = "\n".join(line.removeprefix("   ") for line in block.group(1).splitlines())
    assert source == picture.group(1).rstrip("\n")
