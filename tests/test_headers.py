"""Response headers: a Content-Security-Policy on every page, HSTS over https."""

import re
from pathlib import Path

import pytest

from .lms import INSTRUCTOR

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def policy(response) -> dict[str, str]:
    header = response.headers["Content-Security-Policy"]
    return {d.split(" ", 1)[0]: d.partition(" ")[2] for d in header.split("; ")}


def assert_tool_files_only(csp: dict[str, str]) -> None:
    assert csp["default-src"] == "'self'"
    assert csp["object-src"] == "'none'"
    assert csp["base-uri"] == "'none'"
    for directive in ("script-src", "style-src"):
        assert csp[directive].startswith("'self'")
        assert "unsafe" not in csp[directive]


def test_an_admin_page_allows_only_the_tools_own_files(admin):
    response = admin.get("/admin/")
    assert response.status_code == 200
    csp = policy(response)
    assert_tool_files_only(csp)
    assert csp["script-src"] == "'self'" and csp["form-action"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    assert "Strict-Transport-Security" not in response.headers, "plain http: no HSTS"


@pytest.mark.parametrize("path", ["/admin/login", "/healthz", "/no/such/page"])
def test_https_responses_carry_hsts(client, path):
    response = client.get(path, base_url="https://localhost")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in client.get(path).headers


def test_an_lti_page_may_be_framed_by_its_platform_only(browser, lms, db):
    page = lms.launch(browser, roles=[INSTRUCTOR])  # the course page, in the launch's answer
    assert page.status_code == 200
    csp = policy(page)
    assert_tool_files_only(csp)
    assert csp["frame-ancestors"] == "'self' https://lms.example.edu"
    assert page.headers["Strict-Transport-Security"]


def test_the_cookie_check_page_runs_its_script_by_nonce(browser, lms):
    response = browser.post("/lti/login", data=lms.login_params())
    assert b"lti1p3_new_window" in response.data
    csp = policy(response)
    assert_tool_files_only(csp)
    nonce = re.fullmatch(r"'self' 'nonce-([\w-]+)'", csp["script-src"]).group(1)
    assert len(nonce) >= 16 and csp["style-src"] == f"'self' 'nonce-{nonce}'"
    page = response.get_data(as_text=True)
    scripts = re.findall(r"<script[^>]*>", page)
    assert scripts == [f'<script nonce="{nonce}">']
    assert re.findall(r"<style[^>]*>", page) == [f'<style nonce="{nonce}">']
    assert " style=" not in page and "javascript:" not in page
    assert page.count(" hidden>") == 2, "both message blocks start hidden"
    other = policy(browser.post("/lti/login", data=lms.login_params()))
    assert other["script-src"] != csp["script-src"], "a new nonce for every page"


def test_a_response_keeps_its_own_policy(app, client):
    @app.get("/_own_policy")
    def own_policy():
        return "x", {"Content-Security-Policy": "sandbox"}

    assert client.get("/_own_policy").headers["Content-Security-Policy"] == "sandbox"


@pytest.mark.parametrize("template", sorted(TEMPLATES.rglob("*.html")),
                         ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_templates_need_no_inline_script_or_style(template):
    """What the policy would block: inline scripts, handlers and styles, javascript: URLs."""
    text = template.read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text)
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:", text, re.IGNORECASE)
