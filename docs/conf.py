"""Sphinx configuration of the Shop documentation (build it with ``python docs/build.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# The project root first: the service packages and the seeder import from a checkout.
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]

project = "Shop"
author = "The Shop contributors"
copyright = "the Shop contributors, MIT licence"
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "shop_docs",  # loads sphinxcontrib.openapi (+ httpdomain) and sphinx_click
]

root_doc = "index"
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
html_static_path = ["_static"]
html_css_files = ["shop.css"]
html_theme = "alabaster"
html_theme_options = {
    "description": "Four Flask services, one saga, no lost money.",
    "fixed_sidebar": True,
    "page_width": "1180px",
    "sidebar_width": "240px",
}
html_title = "Shop documentation"
html_show_sourcelink = False

# Everything renders offline: no intersphinx, no CDN, no network at build or view time.
nitpicky = False
pygments_style = "sphinx"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
autoclass_content = "class"
# Only our docstrings: members inherited from libraries (SQLAlchemy's
# DeclarativeBase.metadata, ...) would bring their docs' cross-references along.
autodoc_inherit_docstrings = False

#: ``python docs/build.py --strict`` sets this: a present package that cannot be
#: imported then fails the build instead of being noted on its page.
shop_docs_strict = 0
