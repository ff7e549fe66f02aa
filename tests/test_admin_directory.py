"""Admin read views: resource links, user mappings, users, course spaces."""

import re

import sqlalchemy as sa

from lti_tool.models import GlobalRole, User

from .conftest import csrf
from .lms import INSTRUCTOR


def test_empty_lists_say_what_fills_them(admin):
    assert b"appear with the first launch" in admin.get("/admin/links/").data
    assert b"launches create them" in admin.get("/admin/user-mappings/").data
    assert b"the first launch from a course makes its space" in admin.get(
        "/admin/categories/").data


def test_links_mappings_and_courses_after_launches(admin, lms, browser, db):
    lms.launch(browser, roles=[INSTRUCTOR])
    lms.launch(browser, sub="400", ext={"user_username": "ada"})
    links = admin.get("/admin/links/").get_data(as_text=True)
    assert "Lecture 3 recording" in links and "Modern History" in links
    assert "<td>2</td>" in links, "launch count"
    assert "Lecture 3" in admin.get("/admin/links/?q=lecture").get_data(as_text=True)
    assert "No resource links match" in admin.get("/admin/links/?q=zzz").get_data(as_text=True)
    mappings = admin.get(f"/admin/user-mappings/?platform={lms.platform.id}")
    assert b"ghopper" in mappings.data and b"ada" in mappings.data
    assert b"ada" not in admin.get("/admin/user-mappings/?q=ghopper").data
    courses = admin.get("/admin/categories/").get_data(as_text=True)
    assert "Modern History" in courses and "<td>2</td>" in courses, "two members"
    course_id = db.session.scalar(sa.text("SELECT id FROM category"))
    detail = admin.get(f"/admin/categories/{course_id}").get_data(as_text=True)
    assert "ghopper</td><td>manager" in detail and "ada</td><td>member" in detail


def test_an_admin_sets_a_global_role_and_deactivates(admin, make_user, db):
    user = make_user("teacher")
    page = admin.get("/admin/users/")
    admin.post(f"/admin/users/{user.id}", data={"csrf_token": csrf(page),
                                                f"user-{user.id}-global_role": "editor"})
    db.session.expire_all()
    user = db.session.get(User, user.id)
    assert user.global_role is GlobalRole.EDITOR and not user.active


def test_an_admin_cannot_lock_themselves_out(admin, db):
    root = db.session.scalar(sa.select(User).where(User.username == "root"))
    page = admin.get("/admin/users/")
    done = admin.post(f"/admin/users/{root.id}", data={
        "csrf_token": csrf(page), f"user-{root.id}-global_role": "user",
        f"user-{root.id}-active": "y"}, follow_redirects=True)
    assert b"cannot remove your own admin access" in done.data
    db.session.expire_all()
    assert db.session.get(User, root.id).global_role is GlobalRole.ADMIN


def test_managers_see_users_but_cannot_change_them(client, make_user, db):
    make_user("boss", password="long-password-1", global_role="manager")
    target = make_user("teacher")
    page = client.get("/admin/login")
    client.post("/admin/login", data={"username": "boss", "password": "long-password-1",
                                      "csrf_token": csrf(page)})
    listing = client.get("/admin/users/")
    assert listing.status_code == 200 and b"teacher" in listing.data
    assert b'global_role"' not in listing.data
    response = client.post(f"/admin/users/{target.id}", data={
        "csrf_token": csrf(listing), f"user-{target.id}-global_role": "admin",
        f"user-{target.id}-active": "y"})
    assert response.status_code == 403


def test_the_home_page_counts_today_and_lists_failed_launches(admin, lms, browser):
    lms.launch(browser)
    lms.launch(browser, deployment_id="9")
    page = admin.get("/admin/").get_data(as_text=True)
    assert re.search(r"Launches today</dt><dd>2<", page)
    assert re.search(r"Failed launches today</dt><dd>1<", page)
    assert "unknown_deployment" in page and f"/admin/platforms/{lms.platform.id}" in page
