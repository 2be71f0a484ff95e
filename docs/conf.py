"""Sphinx configuration of the Shop documentation (``make docs``).

The reference pages come from stock extensions: sphinxcontrib-openapi renders
each app's OpenAPI document (exported to ``_generated/`` when the build
starts), sphinx-click the seeder's commands, autosummary and autodoc the
Python packages, myst-parser the Markdown sections in readme/. The two tables of our own
(:mod:`shop_docs`) read the registries the services use.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sphinx.application import Sphinx

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# The project root first: the service packages and the seeder import from a checkout.
sys.path[:0] = [str(ROOT), str(DOCS), str(DOCS / "_ext")]

import export_openapi  # noqa: E402 (needs the path above)

project = "Shop"
author = "The Shop contributors"
copyright = "the Shop contributors, MIT licence"
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "sphinxcontrib.openapi",
    "sphinx_click",
    "myst_parser",
    "shop_docs",
]

root_doc = "index"
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
# readme/: Markdown sections included into the pages (they were the README's).
exclude_patterns = ["_build", "readme", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]
html_static_path = ["_static"]
html_css_files = ["shop.css"]
html_theme = "furo"
html_title = "Shop documentation"
html_show_sourcelink = False
# Everything renders offline: no intersphinx, no CDN, no network at build or view time.

# OpenAPI 3 descriptions are Markdown: the new renderer converts them (CommonMark).
openapi_default_renderer = "httpdomain"
# OpenAPI's "default" response is not an HTTP status: httpdomain lists it as it is.
http_strict_mode = False

autosummary_generate = True
# Importing these would run Alembic or gunicorn's configuration: mocked, autosummary skips them.
autosummary_mock_imports = [
    *(f"{package}.migrations" for package in export_openapi.SERVICES.values()),
    "shopkit.gunicorn_conf",
]
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Only our docstrings: members inherited from libraries (SQLAlchemy's
# DeclarativeBase.metadata, ...) would bring their docs' cross-references along.
autodoc_inherit_docstrings = False

myst_heading_anchors = 3


def _export_openapi(app: Sphinx) -> None:
    """Write every service's OpenAPI document where the API pages read it."""
    export_openapi.export(Path(app.srcdir) / "_generated")


def setup(app: Sphinx) -> None:
    """Export the OpenAPI documents before any page is read."""
    app.connect("builder-inited", _export_openapi)
