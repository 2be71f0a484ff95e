"""The storefront is built from the services' app-factory pieces: request id, deadline, input
guard, security headers with a strict CSP, metrics; and no page needs inline script or style."""

from __future__ import annotations

import re
from pathlib import Path

from flask.testing import FlaskClient

from shopkit import deadline
from storefront import PAGE_POLICY
from tests.support.storefront import FakeServices

TEMPLATES = Path(__file__).resolve().parents[2] / "storefront" / "templates"
INLINE = re.compile(
    r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=|javascript:|hx-on", re.I
)


def test_pages_carry_a_csp_of_own_scripts_and_styles_only_and_may_not_be_framed(
    client: FlaskClient, fake: FakeServices
) -> None:
    fake.on("inventory", "GET", "/products", 200, {"items": [], "page": 1, "total": 0})
    response = client.get("/")
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert policy == PAGE_POLICY
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert "unsafe" not in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Request-ID"]
    login = client.get("/login")
    assert login.headers["Content-Security-Policy"] == PAGE_POLICY


def test_no_template_has_inline_script_style_or_handlers() -> None:
    found = {
        str(path.relative_to(TEMPLATES)): INLINE.findall(path.read_text())
        for path in TEMPLATES.rglob("*.html")
    }
    assert {name: hits for name, hits in found.items() if hits} == {}
    base = (TEMPLATES / "base.html").read_text()
    assert "vendor/htmx/htmx.min.js" in base
    assert '"includeIndicatorStyles": false' in base  # htmx's own inline <style> is off


def test_unstorable_form_input_is_a_clear_422_page(client: FlaskClient, fake: FakeServices) -> None:
    response = client.post("/login", data={"username": "ada\x00", "password": "pw-123456"})
    assert response.status_code == 422
    assert "NUL characters and lone surrogates are not allowed." in response.text
    assert "Something went wrong" not in response.text
    assert not fake.made("customers", "POST", "/auth/login")


def test_every_request_has_a_deadline_passed_on_to_the_services(
    client: FlaskClient, fake: FakeServices
) -> None:
    seen: list[float | None] = []

    def products(_call: object) -> object:
        from shopkit.service_client import ServiceResponse

        seen.append(deadline.remaining())
        return ServiceResponse(200, {"items": [], "page": 1, "total": 0})

    fake.handle("inventory", "GET", "/products", products)  # type: ignore[arg-type]
    assert client.get("/").status_code == 200
    assert seen and seen[0] is not None and 0 < seen[0] <= 8.0
