"""Sessions the server can end: sign-out, a new password, deactivation, a lowered role."""

import pytest
import sqlalchemy as sa

from lti_tool.models import GlobalRole, User

from .conftest import csrf
from .lms import SYSTEM_ADMIN


def sign_in(client, username: str, password: str):
    page = client.get("/admin/login")
    return client.post("/admin/login", data={"username": username, "password": password,
                                             "csrf_token": csrf(page)})


def copy_of(client, app):
    """Another browser holding a copy of this client's session cookie, taken now."""
    name = app.config["SESSION_COOKIE_NAME"]
    thief = app.test_client()
    thief.set_cookie(name, client.get_cookie(name).value)
    assert thief.get("/admin/").status_code == 200, "the copy works while the session does"
    return thief


def user_named(db, username: str) -> User:
    db.session.expire_all()
    return db.session.scalar(sa.select(User).where(User.username == username))


def test_sign_out_ends_every_copy_of_the_session(app, admin):
    copy = copy_of(admin, app)
    page = admin.get("/admin/")
    signed_out = admin.post("/admin/logout", data={"csrf_token": csrf(page)},
                            follow_redirects=True)
    assert signed_out.status_code == 200 and b"Signed out." in signed_out.data
    assert admin.get("/admin/").status_code == 302, "the user is signed out"
    response = copy.get("/admin/")
    assert response.status_code == 302, "the copied cookie is signed out too"
    assert response.headers["Location"].startswith("/admin/login")
    assert sign_in(admin, "root", "long-password-1").status_code == 303, "signing in again works"
    assert admin.get("/admin/").status_code == 200


def test_a_new_password_ends_existing_sessions(app, admin, runner, db):
    copy = copy_of(admin, app)
    result = runner.invoke(args=["set-password", "root", "--password", "another-password-2"])
    assert result.exit_code == 0, result.output
    assert "sessions have ended" in result.output
    assert copy.get("/admin/").status_code == 302
    assert admin.get("/admin/").status_code == 302
    assert sign_in(admin, "root", "long-password-1").status_code == 200, "old password refused"
    assert sign_in(admin, "root", "another-password-2").status_code == 303


def test_a_too_short_new_password_changes_nothing(admin, runner):
    result = runner.invoke(args=["set-password", "root", "--password", "short"])
    assert result.exit_code == 2 and "at least 8 characters" in result.stderr
    assert admin.get("/admin/").status_code == 200
    assert runner.invoke(args=["set-password", "nobody", "--password", "x" * 12]).exit_code == 2


@pytest.fixture
def colleague(app, make_user):
    """A second admin, signed in in their own browser."""
    make_user("ops", password="long-password-2", global_role=GlobalRole.ADMIN)
    browser = app.test_client()
    assert sign_in(browser, "ops", "long-password-2").status_code == 303
    return browser


def set_access(admin, db, username: str, role: str, active: bool):
    page = admin.get("/admin/users/")
    user_id = user_named(db, username).id
    data = {"csrf_token": csrf(page), f"user-{user_id}-global_role": role} | (
        {f"user-{user_id}-active": "y"} if active else {})
    done = admin.post(f"/admin/users/{user_id}", data=data)
    assert done.status_code == 303


def test_deactivation_ends_sessions_for_good(app, admin, colleague, db):
    copy = copy_of(colleague, app)
    set_access(admin, db, "ops", "admin", active=False)
    assert colleague.get("/admin/").status_code == 302
    set_access(admin, db, "ops", "admin", active=True)
    assert colleague.get("/admin/").status_code == 302, "reactivation does not revive old cookies"
    assert copy.get("/admin/").status_code == 302
    assert sign_in(colleague, "ops", "long-password-2").status_code == 303


def test_a_lowered_global_role_ends_sessions(app, admin, colleague, db):
    copy = copy_of(colleague, app)
    set_access(admin, db, "ops", "manager", active=True)
    assert copy.get("/admin/").status_code == 302
    assert colleague.get("/admin/").status_code == 302
    assert sign_in(colleague, "ops", "long-password-2").status_code == 303
    assert colleague.get("/admin/").status_code == 200, "a manager reads after signing in again"


def test_a_raised_global_role_keeps_sessions(app, admin, make_user, db):
    make_user("boss", password="long-password-2", global_role=GlobalRole.MANAGER)
    browser = app.test_client()
    sign_in(browser, "boss", "long-password-2")
    set_access(admin, db, "boss", "admin", active=True)
    assert browser.get("/admin/").status_code == 200
    assert user_named(db, "boss").session_version == 0


def test_a_launch_session_records_the_version_and_ends_with_a_lowered_role(admin, browser,
                                                                          lms, db):
    lms.launch(browser, roles=[SYSTEM_ADMIN])
    assert browser.get("/admin/").status_code == 200, "the launch signed the user in"
    launched = db.session.scalar(sa.select(User).where(User.username != "root"))
    set_access(admin, db, launched.username, "user", active=True)
    assert browser.get("/admin/").status_code == 302
