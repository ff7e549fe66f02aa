"""Who reaches the admin dashboard: admins, managers (read-only), nobody else."""

import pytest

from .conftest import csrf
from .lms import INSTRUCTOR, LEARNER, SYSTEM_ADMIN


def sign_in(client, username, password, next_url=""):
    page = client.get("/admin/login")
    return client.post("/admin/login", data={
        "username": username, "password": password, "next": next_url,
        "csrf_token": csrf(page),
    })


def test_anonymous_visitor_is_sent_to_sign_in(client):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login?next=/admin/")


def test_admin_signs_in_and_sees_the_dashboard(client, make_user, make_platform):
    make_user("root", password="long-password-1", global_role="admin")
    make_platform()
    response = sign_in(client, "root", "long-password-1", "/admin/")
    assert response.status_code == 303 and response.headers["Location"] == "/admin/"
    page = client.get("/admin/")
    assert page.status_code == 200
    assert b"Active platforms" in page.data and b"No failed launches" in page.data
    assert page.headers["Content-Security-Policy"].endswith("frame-ancestors 'none'")
    assert page.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("password", ["wrong-password", ""])
def test_wrong_password_is_a_form_error(client, make_user, password):
    make_user("root", password="long-password-1", global_role="admin")
    response = sign_in(client, "root", password)
    assert response.status_code == 200
    assert b"Wrong username or password" in response.data or b"This field is required" in (
        response.data)
    assert client.get("/admin/").status_code == 302


def test_sign_in_without_csrf_token_is_refused(client, make_user):
    make_user("root", password="long-password-1", global_role="admin")
    response = client.post("/admin/login", data={"username": "root",
                                                 "password": "long-password-1"})
    assert response.status_code in (200, 400)
    assert client.get("/admin/").status_code == 302


@pytest.mark.parametrize("target", ["https://evil.example.com/", "//evil.example.com/",
                                    "/\\evil.example.com", "javascript:alert(1)"])
def test_next_only_goes_to_local_paths(client, make_user, target):
    make_user("root", password="long-password-1", global_role="admin")
    response = sign_in(client, "root", "long-password-1", target)
    assert response.headers["Location"] == "/admin/"


def test_a_deactivated_account_cannot_sign_in(client, make_user):
    make_user("root", password="long-password-1", global_role="admin", active=False)
    sign_in(client, "root", "long-password-1")
    assert client.get("/admin/").status_code == 302


@pytest.mark.parametrize("roles, status", [([LEARNER], 403), ([INSTRUCTOR], 403),
                                           ([SYSTEM_ADMIN], 200)])
def test_after_a_launch_only_managers_and_admins_reach_the_dashboard(browser, lms, roles,
                                                                      status):
    lms.launch(browser, roles=roles)
    assert browser.get("/admin/").status_code == status


def test_a_manager_signed_in_by_a_launch_can_sign_out(browser, lms):
    lms.launch(browser, roles=[SYSTEM_ADMIN])
    page = browser.get("/admin/")
    assert page.status_code == 200
    # Over https Flask-WTF also checks the Referer, which browsers send on same-origin posts.
    signed_out = browser.post("/admin/logout", data={"csrf_token": csrf(page)},
                              headers={"Referer": "https://tool.example.org/admin/"})
    assert signed_out.status_code == 303
    assert browser.get("/admin/").status_code == 302


def test_media_pages_ask_strangers_to_relaunch(client):
    response = client.get("/media/")
    assert response.status_code == 401
    assert b"open the media tool again from your course" in response.data


def test_repeated_failures_lock_the_account_for_a_while(client, make_user, caplog):
    make_user("root", password="long-password-1", global_role="admin")
    for _ in range(5):
        assert b"Wrong username or password" in sign_in(client, "root", "guess-123").data
    locked = sign_in(client, "root", "long-password-1")
    assert locked.status_code == 429 and b"Too many failed sign-ins" in locked.data
    assert client.get("/admin/").status_code == 302
    assert "guess-123" not in caplog.text and "Failed sign-in for 'root'" in caplog.text


def test_many_failures_from_one_address_lock_every_account(client, make_user):
    make_user("root", password="long-password-1", global_role="admin")
    for n in range(20):
        sign_in(client, f"nobody{n}", "guess-123")
    assert sign_in(client, "root", "long-password-1").status_code == 429


def test_a_success_clears_the_account_count(client, make_user):
    make_user("root", password="long-password-1", global_role="admin")
    for _ in range(4):
        sign_in(client, "root", "guess-123")
    assert sign_in(client, "root", "long-password-1").status_code == 303
    client.post("/admin/logout", data={"csrf_token": csrf(client.get("/admin/"))})
    for _ in range(4):
        sign_in(client, "root", "guess-123")
    assert sign_in(client, "root", "long-password-1").status_code == 303
