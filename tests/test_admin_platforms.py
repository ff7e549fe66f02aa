"""Admin: platform registrations from the browser."""

import re

import pytest
import sqlalchemy as sa

from lti_tool.extensions import db as _db
from lti_tool.models import LTILaunchLog, LTIPlatform, LTIResourceLink

from .conftest import csrf

MOODLE = "https://lms.example.edu/moodle"


def form_data(page, **changes) -> dict:
    data = {
        "csrf_token": csrf(page), "name": "Moodle Production", "moodle_site": "",
        "platform_id": MOODLE, "client_id": "Xq7Lm2Pz9Rt4Wv1", "deployment_ids": "5\n7\n",
        "key_set_url": f"{MOODLE}/mod/lti/certs.php",
        "auth_token_url": f"{MOODLE}/mod/lti/token.php",
        "auth_login_url": f"{MOODLE}/mod/lti/auth.php", "auth_audience": "",
        "enable_nrps": "y", "enable_deep_linking": "y", "auto_create_categories": "y",
        "auto_create_users": "y", "auto_sync_roles": "y", "active": "y",
    } | changes
    return {k: v for k, v in data.items() if v is not None}


def test_list_starts_empty_with_a_hint(admin):
    page = admin.get("/admin/platforms/")
    assert page.status_code == 200 and b"No platform is registered yet" in page.data


def test_create_with_every_field(admin, db):
    page = admin.get("/admin/platforms/new")
    labels = re.findall(rb"<label[^>]*>([^<]+)</label>", page.data)
    moodle_order = [b"Platform ID", b"Client ID", b"Deployment ID", b"Public keyset URL",
                    b"Access token URL", b"Authentication request URL"]
    assert [label for label in labels if label in moodle_order] == moodle_order
    response = admin.post("/admin/platforms/new", data=form_data(page))
    assert response.status_code == 303
    platform = db.session.scalar(sa.select(LTIPlatform))
    assert response.headers["Location"].endswith(f"/admin/platforms/{platform.id}")
    assert platform.deployment_ids == ["5", "7"] and platform.active
    assert not platform.remove_from_groups_on_unenroll


def test_the_moodle_site_address_fills_the_urls(admin, db):
    page = admin.get("/admin/platforms/new")
    response = admin.post("/admin/platforms/new", data=form_data(
        page, moodle_site=MOODLE + "/", platform_id="", key_set_url="", auth_token_url="",
        auth_login_url=""))
    assert response.status_code == 303
    platform = db.session.scalar(sa.select(LTIPlatform))
    assert (platform.platform_id, platform.key_set_url, platform.auth_token_url,
            platform.auth_login_url) == (MOODLE, f"{MOODLE}/mod/lti/certs.php",
                                         f"{MOODLE}/mod/lti/token.php",
                                         f"{MOODLE}/mod/lti/auth.php")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"key_set_url": "http://lms.example.edu/certs.php"}, b"must use https"),
        ({"auth_login_url": "not a url"}, b"contains spaces"),
        ({"platform_id": ""}, b"this value is required"),
        ({"moodle_site": "ftp://x"}, b"not an absolute"),
        ({"name": ""}, b"This field is required"),
    ],
)
def test_bad_values_are_form_errors(admin, db, changes, message):
    page = admin.get("/admin/platforms/new")
    response = admin.post("/admin/platforms/new", data=form_data(page, **changes))
    assert response.status_code == 400 and message in response.data
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LTIPlatform)) == 0


@pytest.mark.parametrize("changes, message", [
    ({"client_id": "other"}, b"already exists"),
    ({"name": "Second"}, b"already has a platform"),
])
def test_duplicates_are_form_errors_not_500(admin, db, make_platform, changes, message):
    make_platform(name="Moodle Production", site=MOODLE, client_id="Xq7Lm2Pz9Rt4Wv1")
    page = admin.get("/admin/platforms/new")
    response = admin.post("/admin/platforms/new", data=form_data(page, **changes))
    assert response.status_code == 400 and message in response.data


def test_create_without_csrf_is_refused(admin, db):
    page = admin.get("/admin/platforms/new")
    response = admin.post("/admin/platforms/new", data=form_data(page, csrf_token="bad"))
    assert response.status_code == 400
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LTIPlatform)) == 0


def test_edit_keeps_deployments_as_a_list(admin, db, make_platform):
    platform = make_platform(deployment_ids=["1", "2"])
    page = admin.get(f"/admin/platforms/{platform.id}/edit")
    assert b"1\n2</textarea>" in page.data
    response = admin.post(f"/admin/platforms/{platform.id}/edit", data=form_data(
        page, name=platform.name, platform_id=platform.platform_id,
        client_id=platform.client_id, deployment_ids="2\n3\n3", active=None))
    assert response.status_code == 303
    db.session.expire_all()
    platform = db.session.get(LTIPlatform, platform.id)
    assert platform.deployment_ids == ["2", "3"] and not platform.active


def test_search_filter_and_pages(admin, make_platform):
    for n in range(30):
        make_platform(name=f"Campus {n:02d}", active=n % 2 == 0)
    first = admin.get("/admin/platforms/").data
    assert b"30 results" in first and b"Page 1 of 2" in first
    assert b"Campus 26" not in first and b"Campus 00" in first
    assert b"Campus 26" in admin.get("/admin/platforms/?page=2").data
    assert b"1 result" in admin.get("/admin/platforms/?q=campus%2007").data
    inactive = admin.get("/admin/platforms/?active=no&page=1").data
    assert b"15 results" in inactive and b"Campus 01" in inactive and b"Campus 00" not in inactive


def test_switch_off_and_on(admin, db, make_platform):
    platform = make_platform()
    page = admin.get(f"/admin/platforms/{platform.id}")
    admin.post(f"/admin/platforms/{platform.id}/active",
               data={"csrf_token": csrf(page), "active": "0"})
    db.session.expire_all()
    assert not db.session.get(LTIPlatform, platform.id).active
    admin.post(f"/admin/platforms/{platform.id}/active",
               data={"csrf_token": csrf(page), "active": "1"})
    db.session.expire_all()
    assert db.session.get(LTIPlatform, platform.id).active


def test_refresh_keys_shows_the_kids_or_the_exact_error(admin, db, lms):
    page = admin.get(f"/admin/platforms/{lms.platform.id}")
    done = admin.post(f"/admin/platforms/{lms.platform.id}/refresh-keys",
                      data={"csrf_token": csrf(page)}, follow_redirects=True)
    assert b"Fetched 1 key(s): moodle-key-1" in done.data
    lms.server.mode = "junk"
    failed = admin.post(f"/admin/platforms/{lms.platform.id}/refresh-keys",
                        data={"csrf_token": csrf(page)}, follow_redirects=True)
    assert b"did not return JSON" in failed.data


def test_delete_asks_for_the_name_and_says_what_goes(admin, db, make_platform):
    platform = make_platform(name="Old Moodle")
    db.session.add(LTIResourceLink(platform_id=platform.id, resource_link_id="l"))
    db.session.add(LTILaunchLog(platform_id=platform.id, success=False))
    db.session.commit()
    page = admin.get(f"/admin/platforms/{platform.id}/delete")
    assert b"1 resource links" in page.data and b"1 launch logs" in page.data
    wrong = admin.post(f"/admin/platforms/{platform.id}/delete",
                       data={"csrf_token": csrf(page), "confirm_name": "old moodle"})
    assert wrong.status_code == 400 and b"type the name exactly" in wrong.data
    done = admin.post(f"/admin/platforms/{platform.id}/delete",
                      data={"csrf_token": csrf(page), "confirm_name": "Old Moodle"})
    assert done.status_code == 303
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LTIPlatform)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LTIResourceLink)) == 0


def test_managers_read_but_cannot_change(client, db, make_user, make_platform):
    platform = make_platform()
    make_user("boss", password="long-password-1", global_role="manager")
    page = client.get("/admin/login")
    client.post("/admin/login", data={"username": "boss", "password": "long-password-1",
                                      "csrf_token": csrf(page)})
    listing = client.get("/admin/platforms/")
    assert listing.status_code == 200 and b"Add a platform" not in listing.data
    detail = client.get(f"/admin/platforms/{platform.id}")
    assert b"Refresh keys now" not in detail.data
    assert client.post("/admin/platforms/new", data={"csrf_token": csrf(detail)}).status_code == 403
    assert client.post(f"/admin/platforms/{platform.id}/active",
                       data={"csrf_token": csrf(detail), "active": "0"}).status_code == 403


def test_setup_page_gives_moodle_its_fields_in_order_with_absolute_urls(admin):
    page = admin.get("/admin/setup").get_data(as_text=True)
    labels = re.findall(r'<th scope="row">([^<]+)</th>', page)
    moodle = ["Tool URL", "LTI version", "Public key type", "Public keyset",
              "Initiate login URL", "Redirection URI(s)"]
    assert [label for label in labels if label in moodle] == moodle
    assert 'data-copy="http://localhost/lti/launch"' in page
    assert 'data-copy="http://localhost/lti/jwks"' in page
    assert 'data-copy="http://localhost/lti/login"' in page
    for lms in ("Canvas", "Brightspace", "Sakai", "Open edX"):
        assert f"<h2>{lms}" in page


def test_setup_urls_follow_the_proxy(app, make_user):
    from lti_tool import create_app

    proxied = create_app({"TESTING": True, "TRUSTED_PROXIES": 1,
                          "TRUSTED_HOSTS": ["media.example.org"],
                          "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})
    make_user("root", password="long-password-1", global_role="admin")
    client = proxied.test_client()
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "media.example.org"}
    with proxied.app_context():
        form = client.get("/admin/login", headers=headers)
        client.post("/admin/login", headers=headers | {
            "Referer": "https://media.example.org/admin/login"}, data={
            "username": "root", "password": "long-password-1", "csrf_token": csrf(form)})
        page = client.get("/admin/setup", headers=headers).get_data(as_text=True)
        _db.session.remove()
        _db.engine.dispose()  # this second app's connections, not left to the garbage collector
    assert 'data-copy="https://media.example.org/lti/launch"' in page
    assert 'data-copy="https://media.example.org/lti/jwks"' in page


def test_a_platforms_setup_page_shows_its_values(admin, make_platform):
    platform = make_platform(client_id="abc123", deployment_ids=["5"])
    page = admin.get(f"/admin/platforms/{platform.id}/setup").get_data(as_text=True)
    assert 'data-copy="abc123"' in page and 'data-copy="5"' in page
    assert f'data-copy="{platform.key_set_url}"' in page


def test_the_health_panel_counts_launches_failures_and_measures_skew(admin, lms, browser, db):
    import time

    lms.launch(browser)
    lms.launch(browser, iat=int(time.time()) - 20, exp=int(time.time()) + 40)
    lms.launch(browser, deployment_id="9")
    page = admin.get(f"/admin/platforms/{lms.platform.id}").get_data(as_text=True)
    assert "3 (1 failed)" in page
    assert "unknown_deployment (1)" in page
    assert "Last successful launch</dt><dd>20" in page
    skew = float(re.search(r"Clock skew</dt><dd>([+-][\d.]+) s", page).group(1))
    assert 0 <= skew <= 25


def test_development_mode_accepts_plain_http_platforms(app, admin, db):
    app.config["DEVELOPMENT"] = True
    page = admin.get("/admin/platforms/new")
    response = admin.post("/admin/platforms/new", data=form_data(
        page, moodle_site="http://moodle.lan", platform_id="", key_set_url="",
        auth_token_url="", auth_login_url=""))
    assert response.status_code == 303
    assert db.session.scalar(sa.select(LTIPlatform.key_set_url)) == (
        "http://moodle.lan/mod/lti/certs.php")
