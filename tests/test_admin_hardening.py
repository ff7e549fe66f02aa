"""Admin hardening: the Open edX setup section, hostile query strings, shared helpers."""

import html
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lti_tool.models import GlobalRole, LaunchType, LTILaunchLog, User

from .conftest import csrf


@pytest.fixture
def logs(db, make_platform, make_user):
    """Enough launch log entries, platforms and users for a second page everywhere."""
    from lti_tool.services import audit, directory

    platform = make_platform()
    for n in range(directory.PER_PAGE + 1):
        make_user(f"user{n:03}")
    start = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    db.session.add_all([LTILaunchLog(platform_id=platform.id, success=True,
                                     launch_type=LaunchType.RESOURCE_LINK,
                                     created_at=start + timedelta(minutes=n))
                        for n in range(audit.PAGE_SIZE + 1)])
    db.session.commit()


def test_open_edx_setup_names_edx_own_switches(admin):
    page = admin.get("/admin/setup").get_data(as_text=True)
    section = html.unescape(page[page.index("<h2>Open edX</h2>"):])
    rows = dict(re.findall(r'<th scope="row">([^<]+)</th>\s*<td><code[^>]*>([^<]+)</code>',
                           section))
    assert rows["Tool Launch URL"] == "http://localhost/lti/launch"
    assert rows["Tool Initiate Login URL"] == "http://localhost/lti/login"
    assert rows["Tool Public Key Mode"] == "Keyset URL"
    assert rows["Tool Keyset URL"] == "http://localhost/lti/jwks"
    assert rows["Deep linking"] == "True"
    assert rows["Deep Linking Launch URL"] == "http://localhost/lti/launch"
    prose = " ".join(section.split())
    for pii in ("Request user's username", "Request user's full name",
                "Request user's email", "Course allow PII sharing in LTI flags"):
        assert pii in prose
    assert "Deployment ID</em> is always <code>1</code>" in prose


@pytest.mark.parametrize("url", ["/audit/", "/admin/platforms/", "/admin/users/", "/admin/links/",
                                 "/admin/user-mappings/", "/admin/categories/"])
@pytest.mark.parametrize("query", ["endpoint=x", "_method=POST", "_external=1&_scheme=javascript",
                                   "_anchor=x&endpoint=x&page=2", "values=1&filename=x"])
def test_reserved_url_for_names_in_the_query_string_do_no_harm(admin, logs, url, query):
    response = admin.get(f"{url}?{query}")
    assert response.status_code == 200
    assert "javascript:" not in response.get_data(as_text=True)


def test_the_log_pager_export_and_chart_keep_the_filters_only(admin, logs):
    page = admin.get("/audit/?outcome=success&endpoint=x&_method=POST&date_from=2026-11-20"
                     "&platform=zz").get_data(as_text=True)
    links = re.findall(r'(?:href|src)="(/audit/[^"]*\?[^"]*)"', html.unescape(page))
    older = [link for link in links if "before=" in link]
    assert len(older) == 1 and older[0].startswith("/audit/?")
    for link in links:
        assert "outcome=success" in link and "date_from=2026-11-20" in link, link
        assert "endpoint" not in link and "_method" not in link and "platform" not in link
    second = admin.get(older[0]).get_data(as_text=True)
    assert "Newest" in second and 'rel="next"' not in second, "51 entries: two pages"


def test_directory_pages_keep_the_search(admin, logs):
    first = admin.get("/admin/users/?q=user&endpoint=x").get_data(as_text=True)
    assert "Page 1 of 2" in first
    nxt = html.unescape(re.search(r'href="([^"]+)" rel="next"', first).group(1))
    assert nxt == "/admin/users/?q=user&page=2"
    second = admin.get(nxt).get_data(as_text=True)
    assert "Page 2 of 2" in second and "user050" in second and "user000" not in second
    prev = html.unescape(re.search(r'href="([^"]+)" rel="prev"', second).group(1))
    assert prev == "/admin/users/?q=user&page=1"


def test_admin_and_audit_share_one_staff_guard(app, client, make_user):
    from lti_tool import staff

    for blueprint in ("admin", "audit"):
        assert staff.require_staff in app.before_request_funcs[blueprint]
    make_user("boss", password="long-password-1", global_role="manager")
    page = client.get("/admin/login")
    client.post("/admin/login", data={"username": "boss", "password": "long-password-1",
                                      "csrf_token": csrf(page)})
    assert client.get("/audit/").status_code == 200, "managers read the log"
    listing = client.get("/admin/platforms/")
    assert client.post("/admin/platforms/new", data={"csrf_token": csrf(listing)}
                       ).status_code == 403, "only admins write"
    assert client.post("/admin/logout", data={"csrf_token": csrf(listing)}).status_code == 303


def test_checkboxes_sit_beside_their_labels(admin):
    page = admin.get("/admin/platforms/new").get_data(as_text=True)
    checks = re.findall(r'<div class="field check">\s*<input([^>]*)>\s*<label for="([^"]+)"',
                        page)
    names = {name for _, name in checks}
    assert {"enable_nrps", "enable_deep_linking", "active"} <= names
    assert all('type="checkbox"' in attributes for attributes, _ in checks)
    assert ".field.check { flex-direction: row;" in stylesheet()


def stylesheet() -> str:
    return (Path(__file__).parent.parent / "static" / "css" / "app.css").read_text()


def test_the_admin_navigation_wraps_on_a_phone():
    css = stylesheet()
    rule = re.search(r"\.admin-nav \{([^}]*)\}", css).group(1)
    assert "flex-wrap: wrap" in rule
    header = re.search(r"\.site-header \{([^}]*)\}", css).group(1)
    assert "flex-wrap: wrap" in header


def test_the_charts_last_axis_label_ends_inside_the_chart(admin, logs):
    svg = admin.get("/audit/chart.svg?date_from=2026-11-20&date_to=2026-11-20").get_data(
        as_text=True)
    width = int(re.search(r'viewBox="0 0 (\d+) \d+"', svg).group(1))
    labels = re.findall(
        r'<text x="([\d.]+)" y="\d+"( text-anchor="(\w+)")?>(\d\d \w{3}[^<]*)</text>', svg)
    assert [label[3] for label in labels] == ["20 Nov 00:00", "20 Nov 12:00", "20 Nov 23:00"]
    x, _, anchor, _ = labels[-1]
    assert anchor == "end" and float(x) <= width, "the text runs leftwards from inside the edge"


def test_the_log_filters_render_through_the_form_macros_and_keep_their_values(admin, logs, db):
    platform_id = db.session.scalar(sa.select(LTILaunchLog.platform_id))
    page = html.unescape(admin.get(
        f"/audit/?platform={platform_id}&outcome=failure&category=expired&user=ghopper"
        "&date_from=2026-11-20&launch_type=deep_linking").get_data(as_text=True))
    start = page.index('class="filters audit-filters"')
    form = page[start:page.index("</form>", start)]
    fields = re.findall(r'<div class="field">\s*<label for="(\w+)">', form)
    assert fields == ["platform", "outcome", "category", "launch_type", "user", "course",
                      "date_from", "date_to", "text"]
    assert re.search(rf'<option selected value="{platform_id}">', form)
    assert '<option selected value="failure">Failed</option>' in form
    assert '<option selected value="expired">expired</option>' in form
    assert '<option selected value="deep_linking">' in form
    assert 'name="user" placeholder="username or sub" type="text" value="ghopper"' in form
    assert 'name="date_from" type="date" value="2026-11-20"' in form


def test_the_picker_filters_render_through_the_form_macros(browser, lms):
    from .test_deep_linking import open_picker

    url, _ = open_picker(browser, lms)
    page = html.unescape(browser.get(f"{url}?q=notes&scope=own&endpoint=x").get_data(
        as_text=True))
    start = page.index('role="search"')
    form = page[start:page.index("</form>", start)]
    assert re.findall(r'<div class="field">\s*<label for="(\w+)">', form) == ["q", "scope"]
    assert 'name="q" placeholder="Title or description" type="search" value="notes"' in form
    assert '<option selected value="own">My media</option>' in form
    bogus = html.unescape(browser.get(f"{url}?scope=bogus").get_data(as_text=True))
    assert "<option selected" not in bogus[bogus.index('role="search"'):], "shown as the first"


def test_the_users_page_renders_each_row_through_the_form_macros(admin, make_user, db):
    teacher = make_user("teacher", global_role=GlobalRole.EDITOR)
    page = admin.get("/admin/users/?q=teacher")
    text = html.unescape(page.get_data(as_text=True))
    prefix = f"user-{teacher.id}-"
    assert re.search(rf'<div class="field">\s*<label for="{prefix}global_role">Global role</label>'
                     rf'\s*<select id="{prefix}global_role" name="{prefix}global_role">', text)
    assert '<option selected value="editor">editor</option>' in text
    assert re.search(rf'<div class="field check">\s*<input checked id="{prefix}active" '
                     rf'name="{prefix}active" type="checkbox" value="y">\s*'
                     rf'<label for="{prefix}active">Active</label>', text)
    refused = admin.post(f"/admin/users/{teacher.id}", data={
        "csrf_token": csrf(page), f"{prefix}global_role": "emperor"})
    assert refused.status_code == 400
    db.session.expire_all()
    assert db.session.get(User, teacher.id).global_role is GlobalRole.EDITOR


def test_the_role_mapping_simulator_renders_through_the_form_macros(admin, lms, browser, db):
    lms.launch(browser)
    log_id = db.session.scalar(sa.select(LTILaunchLog.id))
    page = html.unescape(admin.get(f"/admin/platforms/{lms.platform.id}/role-mappings/",
                                   query_string={"launch": log_id}).get_data(as_text=True))
    start = page.index('class="simulator"')
    form = page[start:page.index("</form>", start)]
    assert re.findall(r'<div class="field">\s*<label for="(\w+)">', form) == ["roles", "launch"]
    assert re.search(rf'<option selected value="{log_id}">#{log_id}: http://purl', form)
    assert admin.get(f"/admin/platforms/{lms.platform.id}/role-mappings/?launch=abc"
                     ).status_code == 200
