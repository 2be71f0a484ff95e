"""Sphinx extension of the Shop docs: every reference page is generated from the code.

Directives:

``shop-openapi <service>``
    The service's HTTP API from the OpenAPI document ``docs/export_openapi.py``
    exported from its app, rendered with sphinxcontrib-openapi (see
    :class:`ShopRenderer`), or a note when the service is not in this checkout.
``shop-services``
    The services table (package, port, description from each app).
``shop-roles``
    Who may call each operation, from the ``requires()`` decorators.
``shop-error-codes``
    Every problem ``code`` the code base can answer with (:mod:`shop_sources`).
``shop-settings`` / ``shop-other-environment``
    Every environment variable: the service settings as
    :meth:`shopkit.config.Settings.from_env` reads them, then the rest.
``shop-readme <section>``
    A section of README.md, so the commands are the README's own.
``shop-python-package <package>``
    ``automodule`` of every module of a package (migrations excepted).
``shop-seeder-cli``
    The seeder's click commands (sphinx-click), or a note without the seeder.
``shop-bench-scripts``
    Each benchmark script with its docstring.
"""

from __future__ import annotations

import ast
import importlib
import json
import logging as std_logging
import os
import pkgutil
import traceback
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any
from unittest import mock

import shop_sources
import sphinx_mdinclude
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles
from sphinxcontrib.openapi import utils as openapi_utils
from sphinxcontrib.openapi.renderers import HttpdomainRenderer

logger = logging.getLogger(__name__)

GENERATED = "_generated"
METHOD_ORDER = ["get", "post", "put", "patch", "delete"]

#: What each environment variable means. A variable missing here is still
#: listed (the tables come from the code); it just has no explanation yet.
ENVIRONMENT_MEANINGS = {
    "DATABASE_URL": "The service's PostgreSQL database (``postgres://``, ``postgresql://`` or a "
    "SQLAlchemy URL). Unset or empty: the embedded PostgreSQL under ``SHOP_DATA_DIR``.",
    "SHOP_DATA_DIR": "Where the embedded PostgreSQL keeps its data (in ``pg/``).",
    "CUSTOMERS_URL": "Base URL of the customers service (tokens, JWKS, wallet debits).",
    "INVENTORY_URL": "Base URL of the inventory service (catalogue, stock reservations).",
    "SALES_URL": "Base URL of the sales service (purchases, for reviews).",
    "REVIEWS_URL": "Base URL of the reviews service.",
    "ADMIN_USERNAME": "The bootstrap admin, created once by the customers service.",
    "ADMIN_PASSWORD": "The bootstrap admin's password (a development default is used, and "
    "warned about, when unset).",
    "SERVICE_CLIENT_SECRET": "Development fallback secret of the client-credentials grant, "
    "used by every service whose own ``<NAME>_CLIENT_SECRET`` is unset (a development default, "
    "warned about, when unset). Refused in production mode.",
    "CUSTOMERS_CLIENT_SECRET": "The customers service's own client secret (the customers "
    "service checks every service's secret, so it needs all four).",
    "INVENTORY_CLIENT_SECRET": "The inventory service's own client secret "
    "(``POST /auth/service-token`` as ``inventory``).",
    "SALES_CLIENT_SECRET": "The sales service's own client secret (its token alone may debit "
    "wallets and take stock).",
    "REVIEWS_CLIENT_SECRET": "The reviews service's own client secret (its token alone may ask "
    "sales about purchases).",
    "SHOP_ENV": "``production`` refuses to start while a development default, a shared "
    "``SERVICE_CLIENT_SECRET`` or a missing ``<NAME>_CLIENT_SECRET`` is in use; anything else "
    "(default ``development``) only warns, once per service.",
    "SHOP_SETTINGS_CHECKED": "Set by the gunicorn master once it checked the settings, so its "
    "workers do not repeat the warnings. Not for users.",
    "SHOP_BIND_ADDRESS": "Compose: the host address the services' ports are published on "
    "(default ``127.0.0.1``; ``0.0.0.0`` exposes them to the network).",
    "THROTTLE_ACCOUNT_FAILURES": "Wrong passwords (or service secrets) for one account within "
    "``THROTTLE_WINDOW`` before it is blocked (429).",
    "THROTTLE_ADDRESS_FAILURES": "Wrong credentials from one client address within "
    "``THROTTLE_WINDOW`` before the address is blocked.",
    "THROTTLE_REGISTRATIONS": "Registrations from one client address within ``THROTTLE_WINDOW``.",
    "THROTTLE_WINDOW": "Seconds over which throttled attempts are counted.",
    "THROTTLE_BLOCK": "Seconds of the first block; each further counted attempt doubles it "
    "(at most ``THROTTLE_WINDOW``).",
    "DEACTIVATION_REFRESH": "Seconds between two reads of the list of deactivated accounts by "
    "a service other than customers (a deactivated customer is refused within this time).",
    "SECURITY_BENCH_FLOOD_S": "Benchmarks: seconds of the wrong-password flood in "
    "``bench/security_bench.py``.",
    "SECURITY_BENCH_FLOODERS": "Benchmarks: threads sending that flood.",
    "LOG_LEVEL": "Level of the JSON log lines on stdout (and of gunicorn's error log).",
    "ACCESS_LOG": "``quiet`` (default): an access line only for 5xx answers and slow requests; "
    "``all``: one line per request (``LOG_LEVEL=DEBUG`` shows them too).",
    "SHOP_CONFIG_WARNED": "Set by ``make run`` and by gunicorn for its second and later "
    "workers: the configuration warnings were already printed once, do not repeat them.",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "Tracing: the OTLP/HTTP collector (e.g. "
    "``http://jaeger:4318``). Setting it turns tracing on; nothing set, tracing is off.",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "Tracing: the full traces URL, instead of "
    "``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/traces``.",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "Tracing: ``http/protobuf`` (the only one installed).",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "Tracing: as ``OTEL_EXPORTER_OTLP_PROTOCOL``, for "
    "traces only.",
    "OTEL_TRACES_EXPORTER": "Tracing: ``otlp`` (default when an endpoint is set), ``console`` "
    "or ``none`` (off).",
    "OTEL_SDK_DISABLED": "Tracing: ``true`` turns it off whatever else is set.",
    "OTEL_PYTHON_FLASK_EXCLUDED_URLS": "Tracing: paths not traced (default: probes, "
    "``/metrics`` and the API docs).",
    "SHOP_PROMETHEUS": "``make run``: ``0`` does not start Prometheus even if it is installed.",
    "BENCH_TRACING": "Benchmarks: ``1`` makes ``make bench`` measure the CPU cost of tracing "
    "(off vs on) instead of the full run.",
    "BENCH_TRACING_S": "Benchmarks: seconds of each tracing off/on window (15).",
    "BENCH_TRACING_ROUNDS": "Benchmarks: rounds of one off and one on window (1).",
    "ACCESS_TOKEN_TTL": "Lifetime of an access token, in seconds.",
    "REFRESH_TOKEN_TTL": "Lifetime of a refresh token, in seconds.",
    "HTTP_CONNECT_TIMEOUT": "Connect timeout of calls between services, in seconds.",
    "HTTP_READ_TIMEOUT": "Read timeout of calls between services, in seconds.",
    "HTTP_RETRIES": "Retries of a failed call between services (idempotent calls only).",
    "JWKS_CACHE_TTL": "How long a service caches the customers service's public keys, in seconds.",
    "DB_POOL_SIZE": "SQLAlchemy connection pool size per process (as many again may overflow).",
    "DB_STATEMENT_TIMEOUT_MS": "PostgreSQL ``statement_timeout`` of every connection, in ms.",
    "PASSWORD_HASH_TIME_COST": "Argon2id time cost of password hashes.",
    "PASSWORD_HASH_MEMORY_KIB": "Argon2id memory cost of password hashes, in KiB.",
    "PASSWORD_HASH_PARALLELISM": "Argon2id parallelism of password hashes.",
    "SALES_RECOVERY_INTERVAL": "Seconds between two recovery passes of the sales service "
    "(0 turns the periodic pass off).",
    "SALES_RECOVERY_AFTER": "Seconds a sale must have been pending before recovery settles it.",
    "TRUSTED_PROXIES": "Comma-separated addresses or networks (``10.0.0.0/8``) whose "
    "``X-Forwarded-For`` a service believes, i.e. the gateway's; from any other peer the "
    "header is ignored (:mod:`shopkit.proxy`). Empty: trust nobody.",
    "WEB_CONCURRENCY": "Gunicorn worker processes per service.",
    "GUNICORN_THREADS": "Threads per gunicorn worker (``gthread``).",
    "GUNICORN_TIMEOUT": "Seconds before gunicorn restarts a silent worker.",
    "GUNICORN_GRACEFUL_TIMEOUT": "Seconds a worker gets to finish its requests on shutdown.",
    "PROMETHEUS_MULTIPROC_DIR": "Where gunicorn workers pool their metrics; set by "
    ":mod:`shopkit.gunicorn_conf` to a fresh temporary directory when unset.",
    "SALES_CRASH_AFTER": "Chaos testing only: a sales worker exits abruptly right after the "
    "named saga step (``reserve``, ``debit`` or ``release``) got its answer, to prove that "
    "recovery settles the sale. Never set it in production.",
    "SHOP_PROFILE_DIR": "Benchmarks: where ``bench/gunicorn_profile.py`` writes each gunicorn "
    "worker's cProfile dump; profiling is on while ``$SHOP_PROFILE_DIR/active`` exists.",
    "SHOP_PROFILE_NAME": "Benchmarks: the name prefix of those dumps.",
    "SHOP_PROFILE_CLOCK": "Benchmarks: ``cpu`` times the profiled functions by thread CPU time "
    "instead of the wall clock (``wall``).",
    "SHOP_GATEWAY_PORT": "``make run``: the port of the nginx gateway in front of the services "
    "(default 8000); started only when nginx is installed.",
    "TEST_DATABASE_URL": "Test suite: PostgreSQL server on which a fresh database is created "
    "(and dropped afterwards); unset, an embedded server in a temporary directory.",
    "SHOP_TEST_SERVICES": "Test suite: comma-separated services to migrate and test "
    "(e.g. ``customers,sales`` while a service is half-built); unset, all present ones.",
    "STOREFRONT_PORT": "``make run``: the port of the storefront (the web shop and console).",
    "STOREFRONT_SECRET_KEY": "The storefront's key that signs its session cookie (the user's "
    "tokens) and CSRF tokens; a development default is used, and warned about, when unset.",
    "STOREFRONT_SECURE_COOKIES": "``1``: the storefront's session cookie is sent over HTTPS "
    "only (set it behind TLS).",
}


# --- small node builders ---------------------------------------------------------------------


def _paragraph(*parts: str | nodes.Node) -> nodes.paragraph:
    paragraph = nodes.paragraph()
    for part in parts:
        paragraph += nodes.Text(part) if isinstance(part, str) else part
    return paragraph


def _literal(text: str) -> nodes.literal:
    return nodes.literal(text=text)


def _literals(values: Iterable[str], separator: str = ", ") -> nodes.paragraph:
    paragraph = nodes.paragraph()
    for index, value in enumerate(values):
        if index:
            paragraph += nodes.Text(separator)
        paragraph += _literal(value)
    return paragraph


def _table(
    headers: list[str], rows: Iterable[list[nodes.Node | str]], widths: list[int]
) -> nodes.table:
    table = nodes.table(classes=["shop-table"])
    group = nodes.tgroup(cols=len(headers))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    header_row = nodes.row()
    for header in headers:
        header_row += nodes.entry("", _paragraph(header))
    head += header_row
    body = nodes.tbody()
    group += body
    for cells in rows:
        row = nodes.row()
        for cell in cells:
            row += nodes.entry("", _paragraph(cell) if isinstance(cell, str) else cell)
        body += row
    return table


def _note(text: str, kind: type[nodes.Admonition] = nodes.note) -> nodes.Node:
    return kind("", _paragraph(text))


class ShopDirective(SphinxDirective):
    """Base: helpers to read the exported documents and parse generated reST."""

    def generated_dir(self) -> Path:
        """Where ``export_openapi.py`` wrote the documents (``docs/_generated`` by default)."""
        configured = self.config.shop_generated_dir
        return Path(configured) if configured else Path(self.env.srcdir) / GENERATED

    def manifest(self) -> dict[str, Any] | None:
        """What ``export_openapi.py`` exported, or ``None`` (with a warning) if it did not run."""
        path = self.generated_dir() / "manifest.json"
        if not path.is_file():
            logger.warning(
                "%s is missing: build the docs with 'python docs/build.py' (it exports the "
                "OpenAPI documents first)",
                path,
                location=self.get_location(),
            )
            return None
        self.env.note_dependency(str(path))
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    def spec(self, service: str) -> dict[str, Any] | None:
        """The exported OpenAPI document of ``service`` (fresh copy) or ``None``."""
        path = self.generated_dir() / f"{service}.json"
        if not path.is_file():
            return None
        self.env.note_dependency(str(path))
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    def parse_rst(self, lines: Iterable[str], source: str) -> list[nodes.Node]:
        """Parse generated reST (section titles allowed) into nodes."""
        content = StringList()
        for line in lines:
            content.append(line, source)
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, content, container)
        return list(container.children)

    def strict(self) -> bool:
        """``-D shop_docs_strict=1``: a present package that cannot be imported is an error."""
        return bool(int(self.config.shop_docs_strict or 0))


# --- the HTTP API ----------------------------------------------------------------------------


class ShopRenderer(HttpdomainRenderer):
    """sphinxcontrib-openapi's httpdomain renderer, plus what our documents carry.

    On top of parameters, request and response bodies, examples and status
    codes it renders, per operation: the summary as markup (not bold raw
    text), who may call it (``security`` and ``x-roles``), whether it takes an
    ``Idempotency-Key``, and the problem ``code`` values of each error status
    (``x-error-codes``); operations are grouped in sections by tag.
    """

    def render_restructuredtext_markup(self, spec: dict[str, Any]) -> Iterator[str]:
        """Sections per tag, in the document's tag order, each with its operations."""
        openapi_utils.normalize_spec(spec, **self._options)
        tags = {tag["name"]: tag.get("description", "") for tag in spec.get("tags", [])}
        grouped: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in tags}
        for endpoint, path in spec.get("paths", {}).items():
            for method, operation in path.items():
                if method not in METHOD_ORDER:
                    continue
                tag = (operation.get("tags") or ["other"])[0]
                grouped.setdefault(tag, {}).setdefault(endpoint, {})[method] = operation
        for tag, paths in grouped.items():
            if not paths:
                continue
            title = f"{tag.capitalize()} endpoints"
            yield title
            yield "-" * len(title)
            yield ""
            if tags.get(tag):
                yield from self._convert_markup(tags[tag]).strip().splitlines()
                yield ""
            yield from self.render_paths(paths)

    def render_operation(
        self, endpoint: str, method: str, operation: dict[str, Any]
    ) -> Iterator[str]:
        """One operation: summary, access, idempotency, error codes, then the httpdomain fields."""
        yield f".. http:{method}:: {endpoint}"
        if operation.get("deprecated"):
            yield "   :deprecated:"
        yield ""
        for key in ("summary", "description"):
            if operation.get(key):
                text = " ".join(operation[key].split()) if key == "summary" else operation[key]
                yield from _indented(self._convert_markup(text).strip().splitlines())
                yield ""
        yield from _indented(self.render_access(operation))
        yield from _indented(self.render_error_codes(operation))
        yield from _indented(self.render_parameters(operation.get("parameters", [])))
        if "requestBody" in operation:
            yield from _indented(
                self.render_request_body(operation["requestBody"], endpoint, method)
            )
        yield from _indented(self.render_responses(operation["responses"]))

    def render_responses(self, responses: dict[str, Any]) -> Iterator[str]:
        """Status codes as httpdomain fields; ``default`` (not a status) as a closing line."""
        numbered = {status: r for status, r in responses.items() if str(status)[:1].isdigit()}
        yield from super().render_responses(numbered)
        if "default" in responses:
            yield ""
            yield (
                "Any other status is an error with a problem document as well; "
                "see :doc:`/errors` for every code."
            )
            yield ""

    @staticmethod
    def render_access(operation: dict[str, Any]) -> Iterator[str]:
        """Who may call it, and whether it takes an ``Idempotency-Key``."""
        yield f"**Access:** {access_text(operation)}; see :doc:`/auth`."
        yield ""
        for parameter in operation.get("parameters", []):
            if parameter.get("in") == "header" and parameter["name"].lower() == "idempotency-key":
                need = "required" if parameter.get("required") else "optional"
                yield (
                    f"**Idempotency-Key:** {need}; a retry with the same key never repeats "
                    "the effect (see :doc:`/saga`)."
                )
                yield ""

    @staticmethod
    def render_error_codes(operation: dict[str, Any]) -> Iterator[str]:
        """A list of the problem ``code`` values of each error status."""
        codes = operation.get("x-error-codes") or {}
        if not codes:
            return
        yield "**Error codes** (the problem document's ``code``, see :doc:`/errors`):"
        yield ""
        for status, values in codes.items():
            phrase = HTTPStatus(int(status)).phrase if status.isdigit() else status
            listed = ", ".join(f"``{value}``" for value in values)
            yield f"* {status} {phrase}: {listed}"
        yield ""


def access_text(operation: dict[str, Any]) -> str:
    """Who may call an operation, as reST: from ``security`` and ``x-roles``."""
    security = operation.get("security") or []
    if not security:
        return "public, no token needed"
    if any(requirement == {} for requirement in security):
        return "public; a bearer token (``bearerAuth``) is optional and may show more"
    roles = operation.get("x-roles")
    if roles is None:  # the roles could not be read from the route
        return "bearer token (``bearerAuth``)"
    who = "role " + " or ".join(f"``{role}``" for role in roles) if roles else "any role"
    return f"bearer token (``bearerAuth``), {who}"


def _indented(lines: Iterable[str], indent: int = 3) -> Iterator[str]:
    for line in lines:
        yield (" " * indent + line) if line else line


class OpenApiDirective(ShopDirective):
    """``.. shop-openapi:: customers``: the service's HTTP API reference."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        """Render the exported document, or explain why there is none."""
        service = self.arguments[0]
        manifest = self.manifest()
        if manifest is None:
            return []
        entry = manifest["services"].get(service)
        if entry is None:
            raise self.error(f"unknown service {service!r}")
        spec = self.spec(service) if entry["status"] == "ok" else None
        if spec is None:
            reason = entry.get("error", "no exported document")
            if entry["status"] == "skipped" and self.strict():
                logger.warning(
                    "%s was not exported: %s", service, reason, location=self.get_location()
                )
            return [
                _note(
                    f"The {service} service ({entry['package']}) is not part of this build: "
                    f"{reason}."
                )
            ]
        statuses = sorted(
            {
                str(status)
                for path in spec["paths"].values()
                for method, operation in path.items()
                if method in METHOD_ORDER
                for status in operation.get("responses", {})
            }
        )
        options = {
            "uri": "file://" + str(self.generated_dir() / f"{service}.json"),
            "markup": "commonmark",
            "http-methods-order": METHOD_ORDER,
            "response-examples-for": statuses,
            "generate-examples-from-schemas": None,
        }
        intro = [_paragraph(spec["info"].get("description", ""))]
        intro.append(
            _paragraph(
                "Generated from the app's OpenAPI document (",
                _literal("GET /openapi.json"),
                f", version {spec['info'].get('version', '?')}); the service also serves it "
                "with Swagger UI at ",
                _literal("GET /docs"),
                ".",
            )
        )
        return intro + list(ShopRenderer(self.state, options).render(spec))


class ServicesDirective(ShopDirective):
    """``.. shop-services::``: one row per service, from the exported documents."""

    def run(self) -> list[nodes.Node]:
        """The table."""
        from shopkit.config import SERVICE_PORTS  # noqa: PLC0415

        manifest = self.manifest()
        if manifest is None:
            return []
        rows = []
        for service, entry in manifest["services"].items():
            spec = self.spec(service) if entry["status"] == "ok" else None
            rows.append(
                [
                    _paragraph(
                        nodes.reference("", service, internal=True, refuri=self._api_uri(service))
                    ),
                    _literals([entry["package"] + "/"]),
                    str(SERVICE_PORTS.get(service, "")),
                    spec["info"].get("description", "") if spec else f"({entry['status']})",
                ]
            )
        return [_table(["service", "package", "port", "what it does"], rows, [12, 20, 6, 50])]

    def _api_uri(self, service: str) -> str:
        return self.env.app.builder.get_relative_uri(self.env.docname, f"api/{service}")


class RolesDirective(ShopDirective):
    """``.. shop-roles::``: who may call each operation, per service."""

    def run(self) -> list[nodes.Node]:
        """A table per present service."""
        manifest = self.manifest()
        if manifest is None:
            return []
        result: list[nodes.Node] = []
        for service, entry in manifest["services"].items():
            spec = self.spec(service) if entry["status"] == "ok" else None
            if spec is None:
                continue
            rows = []
            for path, operations in spec["paths"].items():
                for method in METHOD_ORDER:
                    operation = operations.get(method)
                    if operation is None:
                        continue
                    security = operation.get("security") or []
                    roles = operation.get("x-roles")
                    if not security:
                        who: nodes.Node = _paragraph("public")
                    elif any(requirement == {} for requirement in security):
                        who = _paragraph("public (token optional)")
                    elif roles:
                        who = _literals(roles, " or ")
                    else:
                        who = _paragraph("any role" if roles == [] else "bearer token")
                    signature = _literals([f"{method.upper()} {path}"])
                    rows.append([signature, who, _summary_nodes(self, operation)])
            rubric = nodes.rubric(text=f"{service} ({entry['package']})")
            result += [rubric, _table(["operation", "token role", "what"], rows, [30, 18, 52])]
        return result


def _summary_nodes(directive: ShopDirective, operation: dict[str, Any]) -> nodes.Node:
    """An operation's summary (Markdown, as in OpenAPI) as nodes."""
    summary = " ".join(operation.get("summary", "").split())
    container = nodes.container()
    if summary:
        rst = sphinx_mdinclude.convert(summary).strip().splitlines()
        container += directive.parse_rst(rst, "<summary>")
    return container


class ErrorCodesDirective(ShopDirective):
    """``.. shop-error-codes::``: every problem ``code``, found in the source."""

    def run(self) -> list[nodes.Node]:
        """The table of codes."""
        for path in shop_sources.python_files(*shop_sources.CODE_PACKAGES):
            self.env.note_dependency(str(path))
        rows = []
        for code, entry in shop_sources.error_codes().items():
            statuses = ", ".join(str(s) for s in sorted(entry.statuses)) or "any other"
            details = nodes.paragraph()
            for index, detail in enumerate(entry.details[:3]):
                if index:
                    details += nodes.Text(" / ")
                details += nodes.emphasis(text=detail)
            if not entry.details:
                details += nodes.Text(
                    "Default for this status (" + _phrases(entry.statuses) + ")."
                    if entry.statuses
                    else "A status with no code of its own."
                )
            target = nodes.target("", "", ids=[f"error-{code.replace('_', '-')}"])
            code_cell = _paragraph(target, _literal(code))
            rows.append([code_cell, statuses, details, _literals(entry.packages)])
        return [_table(["code", "status", "detail sent", "raised in"], rows, [22, 8, 50, 20])]


def _phrases(statuses: Iterable[int]) -> str:
    return ", ".join(HTTPStatus(s).phrase for s in sorted(statuses))


# --- configuration ---------------------------------------------------------------------------


class _RecordingEnviron(dict):  # type: ignore[type-arg]
    """An ``os.environ`` stand-in that remembers which names were read."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: list[str] = []

    def _note(self, key: str) -> None:
        if key not in self.read:
            self.read.append(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self._note(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self._note(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._note(str(key))
        return super().__contains__(key)


def settings_variables() -> list[tuple[str, str, str]]:
    """``(variable, Settings field, default)`` for every variable ``Settings.from_env`` reads.

    It runs ``from_env`` with an empty environment (for the defaults and the
    names read), then once per variable set to ``"7"`` to see which field it fills.
    """
    from shopkit.config import PROJECT_ROOT, Settings  # noqa: PLC0415

    quiet = std_logging.getLogger("shopkit.config")
    previous = quiet.disabled
    quiet.disabled = True
    try:
        environ = _RecordingEnviron({})
        with mock.patch.object(os, "environ", environ):
            baseline = Settings.from_env("docs")
        result = []
        for name in environ.read:
            field = ""
            try:
                with mock.patch.object(os, "environ", _RecordingEnviron({name: "7"})):
                    changed = Settings.from_env("docs")
            except (TypeError, ValueError):
                changed = None
            if changed is not None:
                field = next(
                    (key for key, value in vars(changed).items() if value != vars(baseline)[key]),
                    "",
                )
            default = vars(baseline).get(field, "")
            if isinstance(default, Path):
                try:
                    default = default.relative_to(PROJECT_ROOT).as_posix()
                except ValueError:
                    default = str(default)
            result.append((name, field, str(default)))
        return result
    finally:
        quiet.disabled = previous


class SettingsDirective(ShopDirective):
    """``.. shop-settings::``: the variables of :class:`shopkit.config.Settings`."""

    def run(self) -> list[nodes.Node]:
        """The table, meanings parsed as reST."""
        self.env.note_dependency(str(shop_sources.ROOT / "shopkit" / "config.py"))
        rows = []
        for name, field, default in settings_variables():
            rows.append(
                [
                    _paragraph(
                        nodes.target("", "", ids=[f"env-{name.lower().replace('_', '-')}"]),
                        _literal(name),
                    ),
                    _literals([field]) if field else "",
                    _literals([default]) if default else "(empty)",
                    self._meaning(name, ["shopkit/config.py"]),
                ]
            )
        return [_table(["variable", "setting", "default", "meaning"], rows, [22, 20, 18, 40])]

    def _meaning(
        self, name: str, files: list[str] | None = None, targets: list[str] | None = None
    ) -> nodes.Node:
        text = ENVIRONMENT_MEANINGS.get(name, "")
        if not text and targets:  # e.g. a benchmark's settings dataclass
            text = "Sets " + ", ".join(f"``{t}``" for t in targets) + " (see the script)."
        elif not text:  # listed anyway: the table comes from the code, the words from us
            text = "Not described yet: see " + ", ".join(f"``{f}``" for f in files or []) + "."
        container = nodes.container()
        container += self.parse_rst([text], f"<meaning of {name}>")
        return container


class OtherEnvironmentDirective(SettingsDirective):
    """``.. shop-other-environment::``: variables read elsewhere (gunicorn, chaos, tests)."""

    def run(self) -> list[nodes.Node]:
        """The table, then which service settings are also read outside the services."""
        in_settings = {name for name, _, _ in settings_variables()}
        rows = []
        shared: list[tuple[str, list[str]]] = []
        for name, entry in shop_sources.environment_variables().items():
            files = sorted({place.split(":")[0] for place in entry.places})
            for file in files:
                self.env.note_dependency(str(shop_sources.ROOT / file))
            if name in in_settings:
                elsewhere = [file for file in files if file != "shopkit/config.py"]
                if elsewhere:
                    shared.append((name, elsewhere))
                continue
            rows.append(
                [
                    _paragraph(
                        nodes.target("", "", ids=[f"env-{name.lower().replace('_', '-')}"]),
                        _literal(name),
                    ),
                    _literals(entry.defaults) if entry.defaults else "(unset)",
                    _literals(files, ", "),
                    self._meaning(name, files, entry.targets),
                ]
            )
        result: list[nodes.Node] = [
            _table(["variable", "default", "read by", "meaning"], rows, [22, 12, 26, 40])
        ]
        if shared:
            items = nodes.bullet_list()
            for name, files in shared:
                items += nodes.list_item(
                    "", _paragraph(_literal(name), " (above) is also read by ", _literals(files))
                )
            result += [_paragraph("Service settings that tools read too, with the same meaning:")]
            result.append(items)
        return result


# --- README, Python API, seeder, benchmarks --------------------------------------------------


class ReadmeDirective(ShopDirective):
    """``.. shop-readme:: Quick start``: that README section, converted to reST."""

    required_arguments = 1
    final_argument_whitespace = True

    def run(self) -> list[nodes.Node]:
        """The section's content."""
        readme = shop_sources.ROOT / "README.md"
        self.env.note_dependency(str(readme))
        try:
            markdown = shop_sources.readme_section(self.arguments[0], readme)
        except LookupError as exc:
            raise self.error(str(exc)) from exc
        rst = sphinx_mdinclude.convert(markdown)
        return self.parse_rst(rst.splitlines(), f"README.md ({self.arguments[0]})")


def _walk_modules(package: str) -> list[str]:
    module = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(module.__path__, prefix=package + "."):
        if ".migrations" in info.name or info.name.endswith(".__main__"):
            continue
        names.append(info.name)
    return sorted(names, key=lambda n: (n != package, n))


class PythonPackageDirective(ShopDirective):
    """``.. shop-python-package:: shopkit``: ``automodule`` of each of its modules."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        """A section per module, or a note when the package is absent or broken."""
        package = self.arguments[0]
        if shop_sources.package_dir(package) is None:
            return [_note(f"The {package} package is not part of this checkout.")]
        try:
            modules = _walk_modules(package)
            for name in modules:
                importlib.import_module(name)
        except Exception as exc:
            message = (
                f"{package} cannot be imported, so it is not documented here: "
                f"{type(exc).__name__}: {exc}"
            )
            if self.strict():
                logger.warning(message, location=self.get_location())
            logger.info("%s\n%s", message, traceback.format_exc())
            return [_note(message, nodes.warning)]
        lines: list[str] = []
        for name in modules:
            if name != package:  # the package itself goes under the page's own title
                title = f"``{name}``"
                lines += [title, "-" * len(title), ""]
            lines += [f".. automodule:: {name}", "   :members:", "   :show-inheritance:", ""]
        return self.parse_rst(lines, f"<{package} modules>")


#: Where ``python -m seeder`` may find its click group: modules, then attribute names.
SEEDER_MODULES = ["seeder.cli", "seeder.commands", "seeder.main", "seeder"]
SEEDER_NAMES = ["cli", "main", "seeder", "app"]


def find_seeder_cli() -> str | None:
    """``module:attribute`` of the seeder's click group, or ``None`` without a seeder.

    ``seeder/__main__.py`` names it (``from seeder.cli import cli``); otherwise
    the usual modules and names are tried. ``__main__`` itself is never imported.
    """
    import click  # noqa: PLC0415

    candidates: list[tuple[str, str]] = []
    main = shop_sources.ROOT / "seeder" / "__main__.py"
    if main.is_file():
        try:
            tree = ast.parse(main.read_text(encoding="utf-8"))
        except SyntaxError:
            tree = ast.Module(body=[], type_ignores=[])
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                candidates += [(node.module, alias.name) for alias in node.names]
    candidates += [(module, name) for module in SEEDER_MODULES for name in SEEDER_NAMES]
    for module_name, attribute in candidates:
        if not module_name.startswith("seeder"):
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception:  # noqa: S112 (not there, or not importable: try the next one)
            continue
        if isinstance(getattr(module, attribute, None), click.Command):
            return f"{module_name}:{attribute}"
    return None


class SeederCliDirective(ShopDirective):
    """``.. shop-seeder-cli::``: the seeder's commands via sphinx-click, or a note."""

    def run(self) -> list[nodes.Node]:
        """Every command and option, generated from the click definitions."""
        for path in shop_sources.python_files("seeder"):
            self.env.note_dependency(str(path))
        if shop_sources.package_dir("seeder") is None:
            return [
                _note(
                    "The seeder package is not part of this checkout yet, so its command "
                    "reference is not generated. Once seeder/ exists, this page lists every "
                    "command and option of python -m seeder, generated from its click commands."
                )
            ]
        target = find_seeder_cli()
        if target is None:
            message = "seeder/ exists but no click command group was found in it"
            if self.strict():
                logger.warning(message, location=self.get_location())
            return [_note(message + ".", nodes.warning)]
        if "sphinx_click" not in self.env.app.extensions:
            logger.warning(
                "sphinx-click is not installed: the seeder CLI reference needs it "
                "(pip install sphinx-click)",
                location=self.get_location(),
            )
            return []
        lines = [f".. click:: {target}", "   :prog: python -m seeder", "   :nested: full", ""]
        return self.parse_rst(lines, "<seeder cli>")


class BenchScriptsDirective(ShopDirective):
    """``.. shop-bench-scripts::``: each ``bench/*.py`` with its docstring."""

    def run(self) -> list[nodes.Node]:
        """A section per script."""
        bench = shop_sources.ROOT / "bench"
        scripts = sorted(bench.glob("*.py")) if bench.is_dir() else []
        if not scripts:
            return [_note("No benchmark scripts are in this checkout yet.")]
        lines: list[str] = []
        for script in scripts:
            self.env.note_dependency(str(script))
            try:
                doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
            except SyntaxError:
                doc = ""
            title = f"``bench/{script.name}``"
            lines += [title, "-" * len(title), ""]
            lines += [*(doc or "(This script has no docstring yet.)").splitlines(), ""]
        return self.parse_rst(lines, "<bench scripts>")


def _add_seeder_extension(app: Sphinx) -> None:
    """Load sphinx-click when it is installed (the seeder page needs it, nothing else)."""
    try:
        importlib.import_module("sphinx_click")
    except ImportError:
        return
    app.setup_extension("sphinx_click")


def _analyse_only_our_modules() -> None:
    """Make autodoc's source analysis skip third-party modules (a third of the build time).

    For a class, autodoc parses the source of every module in its MRO looking
    for ``@overload`` constructors: SQLAlchemy, marshmallow, Flask, typing...
    None of that is documented here, so only our own packages are analysed;
    for any other module autodoc behaves as for a module without source.
    """
    original = ModuleAnalyzer.for_module.__func__  # type: ignore[attr-defined]
    ours = set(shop_sources.CODE_PACKAGES)

    def for_module(cls: type[ModuleAnalyzer], modname: str) -> ModuleAnalyzer:
        if modname.partition(".")[0] not in ours:
            raise PycodeError(f"{modname} is not analysed (not a Shop package)")
        return original(cls, modname)  # type: ignore[no-any-return]

    ModuleAnalyzer.for_module = classmethod(for_module)  # type: ignore[method-assign,assignment]


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directives."""
    _analyse_only_our_modules()
    app.setup_extension("sphinxcontrib.openapi")
    _add_seeder_extension(app)
    app.add_config_value("shop_docs_strict", 0, "env", types=[int, str])
    app.add_config_value("shop_generated_dir", "", "env", types=[str])
    for name, directive in DIRECTIVES.items():
        app.add_directive(name, directive)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


DIRECTIVES: dict[str, type[SphinxDirective]] = {
    "shop-openapi": OpenApiDirective,
    "shop-services": ServicesDirective,
    "shop-roles": RolesDirective,
    "shop-error-codes": ErrorCodesDirective,
    "shop-settings": SettingsDirective,
    "shop-other-environment": OtherEnvironmentDirective,
    "shop-readme": ReadmeDirective,
    "shop-python-package": PythonPackageDirective,
    "shop-seeder-cli": SeederCliDirective,
    "shop-bench-scripts": BenchScriptsDirective,
}
