"""The setup page offers the Dynamic Registration URL first, the manual path second."""

import re

from lti_tool import create_app
from lti_tool.extensions import db as _db

from .conftest import csrf

PUBLIC = "https://media.example.edu"


def test_the_registration_url_comes_first_with_a_copy_button_and_each_lms_steps(admin):
    page = admin.get("/admin/setup").get_data(as_text=True)
    copies = re.findall(r'data-copy="([^"]+)"', page)
    assert copies[0] == "http://localhost/lti/register"
    assert page.index("/lti/register") < page.index("The manual way") < page.index("<h2>Moodle")
    prose = " ".join(page.split())
    for step in ("Manage tools", "Tool URL…", "Add LTI Advantage", "activate the tool",
                 "Developer Keys › + Developer Key › LTI Registration",
                 "Manage Extensibility › LTI Advantage › Register Tool", "Dynamic",
                 "REGISTRATION_TRUSTED_ISSUERS", 'href="/admin/inbox/"'):
        assert step in prose, step


def test_the_registration_url_is_built_from_the_public_address(app, make_user):
    public = create_app({"TESTING": True, "PUBLIC_BASE_URL": PUBLIC,
                         "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})
    make_user("root", password="long-password-1", global_role="admin")
    client = public.test_client()
    base = {"base_url": "https://127.0.0.1:8000"}
    with public.app_context():
        form = client.get("/admin/login", **base)
        client.post("/admin/login", **base, headers={"Referer": f"{PUBLIC}/admin/login"}, data={
            "username": "root", "password": "long-password-1", "csrf_token": csrf(form)})
        page = client.get("/admin/setup", **base).get_data(as_text=True)
        _db.session.remove()
        _db.engine.dispose()
    assert re.findall(r'data-copy="([^"]+)"', page)[0] == f"{PUBLIC}/lti/register"


def test_with_registration_switched_off_the_page_says_so(app, admin):
    app.config["REGISTRATION_ENABLED"] = False
    page = admin.get("/admin/setup").get_data(as_text=True)
    assert "/lti/register" not in page and "REGISTRATION_ENABLED=0" in page


def test_a_platforms_setup_page_has_no_registration_section(admin, make_platform):
    platform = make_platform()
    page = admin.get(f"/admin/platforms/{platform.id}/setup").get_data(as_text=True)
    assert "/lti/register" not in page
