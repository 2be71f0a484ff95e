"""The API pages in a real browser: Debian's Chromium, headless, at 1400 and 1920 px.

The field-list labels of the API pages ("Request JSON Object:", "Status
Codes:") once rendered one letter per line in a column a few pixels wide. Here
every label must sit on one line at least a few words wide, the article must
keep a readable width and nothing may overflow the window sideways.
Screenshots go to the test's temporary directory (never committed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from tests.support.chromium import headless_chromium

WIDTHS = (1400, 1920)
PAGES = ("api/customers.html", "api/inventory.html", "api/sales.html", "api/reviews.html")
LABELS = ("Request JSON Object:", "Response JSON Object:", "Status Codes:", "Query Parameters:")

#: Geometry of the page: each field-list label, the article, the document's width.
MEASURE = """
const labels = [...document.querySelectorAll('dl.field-list > dt')].map(dt => {
  const box = dt.getBoundingClientRect();
  const line = parseFloat(getComputedStyle(dt).lineHeight) || 1.5 * parseFloat(getComputedStyle(dt).fontSize);
  return {text: dt.textContent.trim(), width: box.width, height: box.height, line: line,
          chars: parseFloat(getComputedStyle(dt).fontSize)};
});
const article = document.querySelector('article') || document.body;
return {labels: labels, article: article.getBoundingClientRect().width,
        scroll: document.documentElement.scrollWidth, window: window.innerWidth};
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium from the distribution, with a fresh profile."""
    with headless_chromium("--hide-scrollbars") as driver:
        yield driver


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("page", PAGES)
def test_api_page_field_labels_render_on_one_line(
    built_docs: Path, browser: WebDriver, tmp_path: Path, page: str, width: int
) -> None:
    browser.set_window_size(width, 1000)
    browser.get((built_docs / page).as_uri())
    geometry: dict[str, Any] = browser.execute_script(MEASURE)
    assert geometry["window"] == width
    labels = geometry["labels"]
    assert {label["text"] for label in labels} & set(LABELS), "no field lists on the page"
    for label in labels:
        # "Status Codes:" is 13 characters: at least ~6 em wide, and one line high.
        assert label["width"] >= 6 * label["chars"], label
        assert label["height"] <= 1.6 * label["line"], label
    assert geometry["article"] >= 600, geometry["article"]
    assert geometry["scroll"] <= geometry["window"], "the page overflows sideways"
    shot = tmp_path / f"{page.replace('/', '-')}-{width}.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
