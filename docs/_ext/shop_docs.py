"""Sphinx directives for the tables read from the project's own registries.

``shop-environment``
    Every environment variable, from :data:`shopkit.environment.ENVIRONMENT`
    (the list :class:`shopkit.config.Settings` reads), one table per scope.
``shop-error-codes``
    Every problem ``code``, from the registry :data:`shopkit.problems.PROBLEMS`
    (a service cannot answer a code that is not in it).
``shop-apps``
    Every service and front end, from the registry :data:`shopkit.registry.APPS`
    (what the launcher starts and the deploy tests check).

It also ends the parameters' field list before a request body that is not JSON
(an image upload): sphinxcontrib-openapi's renderer writes that body's example
straight after the fields, and docutils needs a blank line between them.

And it builds the navigation tree of the pages that are no document (the
highlighted sources ``sphinx.ext.viewcode`` writes, the index, the search page)
once per directory: the theme resolves the whole table of contents for every
page, which was a third of the build, and for a page that is not in the tree
the result depends only on the page's directory (its links are relative to it;
no entry is marked as the current page).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles
from sphinxcontrib.openapi.renderers import _httpdomain


def _cell(text: str) -> str:
    return text.replace("\n", " ") if text else "—"


def list_table(title: str, headers: list[str], rows: list[list[str]]) -> list[str]:
    """A ``list-table`` directive, as reST lines (cells are reST too)."""
    lines = [f".. list-table:: {title}", "   :header-rows: 1", "   :class: shop-table", ""]
    for row in [headers, *rows]:
        lines.append(f"   * - {_cell(row[0])}")
        lines += [f"     - {_cell(cell)}" for cell in row[1:]]
    return [*lines, ""]


class TableDirective(SphinxDirective):
    """Base: parse the reST lines :meth:`lines` returns."""

    def lines(self) -> list[str]:
        """The reST to render."""
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        """Parse :meth:`lines` in place."""
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(self.lines(), "<shop_docs>"), container)
        return list(container.children)


class EnvironmentDirective(TableDirective):
    """``.. shop-environment::``: the declared environment variables."""

    def lines(self) -> list[str]:
        """One table per scope; a setting's default is its ``Settings`` field's."""
        from shopkit.config import PROJECT_ROOT, Settings  # noqa: PLC0415
        from shopkit.environment import ENVIRONMENT, SCOPES  # noqa: PLC0415

        defaults: dict[str, Any] = {f.name: f.default for f in fields(Settings)}
        out: list[str] = []
        for scope, title in SCOPES.items():
            rows = []
            for variable in (v for v in ENVIRONMENT if v.scope == scope):
                default = variable.default or defaults.get(variable.setting, "")
                if default is MISSING or default == "":
                    default = ""
                elif str(default).startswith(str(PROJECT_ROOT)):
                    default = str(default)[len(str(PROJECT_ROOT)) + 1 :]
                setting = f"``{variable.setting}``" if variable.setting else ""
                shown = f"``{default}``" if default != "" else ""
                rows.append([f"``{variable.name}``", shown, variable.meaning, setting])
            out += list_table(title, ["variable", "default", "meaning", "setting"], rows)
        return out


class ErrorCodesDirective(TableDirective):
    """``.. shop-error-codes::``: the registered problem codes."""

    def lines(self) -> list[str]:
        """One table: code, statuses, meaning, extension members."""
        from shopkit.problems import PROBLEMS  # noqa: PLC0415

        rows = [
            [
                f"``{spec.code}``",
                ", ".join(str(status) for status in spec.statuses),
                spec.title,
                ", ".join(f"``{member}``" for member in spec.members),
            ]
            for spec in PROBLEMS.values()
        ]
        return list_table("Problem codes", ["code", "status", "meaning", "members"], rows)


class AppsDirective(TableDirective):
    """``.. shop-apps::``: the registered services and front ends."""

    def lines(self) -> list[str]:
        """One table: app, package, port, what it owns (schema and role), whom it calls."""
        from shopkit.registry import APPS  # noqa: PLC0415

        rows = [
            [
                app.name,
                f"``{app.package}/``",
                str(app.port),
                (f"``{app.schema}`` (role ``{app.role}``): " if app.has_database else "")
                + app.owns,
                ", ".join(app.calls),
            ]
            for app in APPS
        ]
        headers = ["app", "package", "port", "owns (schema)", "calls"]
        return list_table("Services and front ends", headers, rows)


_render_request_body = _httpdomain.HttpdomainRenderer.render_request_body


def _request_body_after_the_fields(
    self: Any, request_body: dict[str, Any], endpoint: str, method: str
) -> Any:
    """The renderer's request body, after a blank line when no JSON fields come first."""
    if not any(_httpdomain._is_json_mimetype(t) for t in request_body.get("content", {})):
        yield ""
    yield from _render_request_body(self, request_body, endpoint, method)


class SharedNavigation:
    """One navigation tree per directory and arguments for the pages outside the documents."""

    def __init__(self) -> None:
        self._built: dict[tuple[str, tuple[tuple[str, Any], ...]], str] = {}

    def on_page(
        self, app: Sphinx, pagename: str, _template: str, context: dict[str, Any], _doctree: Any
    ) -> None:
        """``html-page-context``: give a page that is no document the shared ``toctree``."""
        if pagename in app.env.all_docs or "toctree" not in context:
            return
        context["toctree"] = self._shared(context["toctree"], posixpath.dirname(pagename))

    def _shared(self, build: Callable[..., str], directory: str) -> Callable[..., str]:
        def toctree(**kwargs: Any) -> str:
            key = (directory, tuple(sorted(kwargs.items())))
            if key not in self._built:
                self._built[key] = build(**kwargs)
            return self._built[key]

        return toctree


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directives (and the renderer's fix, see the module documentation)."""
    _httpdomain.HttpdomainRenderer.render_request_body = _request_body_after_the_fields
    app.add_directive("shop-apps", AppsDirective)
    app.add_directive("shop-environment", EnvironmentDirective)
    app.add_directive("shop-error-codes", ErrorCodesDirective)
    # Before the theme's own handler (priority 500), which builds the tree from ``toctree``.
    app.connect("html-page-context", SharedNavigation().on_page, priority=400)
    return {"version": "2", "parallel_read_safe": True, "parallel_write_safe": True}
