"""Admin: role mappings per platform, and the simulator that uses the launch's own code."""

import re

import sqlalchemy as sa

from lti_tool.models import GlobalRole, GroupRole, LTIRoleMapping, RBACMembership, User

from .conftest import csrf
from .lms import INSTRUCTOR, LEARNER

TA = "http://purl.imsglobal.org/vocab/lis/v2/membership#TeachingAssistant"


def result_of(page) -> tuple[str, str]:
    text = page.get_data(as_text=True)
    global_role = re.search(r"Global role</th><td><strong>(\w+)", text).group(1)
    group_role = re.search(r"Course role</th><td><strong>(\w+)", text).group(1)
    return global_role, group_role


def add(admin, platform, lti_role, global_role="", group_role="", expect=303):
    page = admin.get(f"/admin/platforms/{platform.id}/role-mappings/new")
    response = admin.post(f"/admin/platforms/{platform.id}/role-mappings/new", data={
        "csrf_token": csrf(page), "lti_role": lti_role, "global_role": global_role,
        "group_role": group_role, "action": "save"})
    assert response.status_code == expect, response.data[-600:]
    return response


def test_the_page_lists_mappings_and_the_defaults(admin, make_platform):
    platform = make_platform()
    page = admin.get(f"/admin/platforms/{platform.id}/role-mappings/")
    assert page.status_code == 200 and b"No mappings" in page.data
    assert b"membership#Instructor" in page.data and b"advancedUser" in page.data


def test_a_mapping_written_short_applies_to_launches_sending_the_uri(admin, lms, db, browser):
    add(admin, lms.platform, "Learner", "editor", "contributor")
    lms.launch(browser, roles=[LEARNER])
    user = db.session.scalar(sa.select(User).where(User.username == "ghopper"))
    assert user.global_role is GlobalRole.EDITOR
    assert db.session.scalar(sa.select(RBACMembership.role)) is GroupRole.CONTRIBUTOR


def test_the_same_role_written_the_other_way_is_a_form_error(admin, make_platform, db):
    platform = make_platform()
    add(admin, platform, "Instructor", "", "member")
    response = add(admin, platform, INSTRUCTOR, "", "manager", expect=400)
    assert b"already mapped (as Instructor)" in response.data
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LTIRoleMapping)) == 1


def test_an_empty_role_is_a_form_error(admin, make_platform):
    response = add(admin, make_platform(), "  ", expect=400)
    assert b"This field is required" in response.data or b"enter an LTI role" in response.data


def test_edit_and_delete(admin, make_platform, db):
    platform = make_platform()
    add(admin, platform, "Mentor", "", "member")
    mapping = db.session.scalar(sa.select(LTIRoleMapping))
    url = f"/admin/platforms/{platform.id}/role-mappings/{mapping.id}"
    page = admin.get(f"{url}/edit")
    assert re.search(rb'<option selected value="member">', page.data)
    admin.post(f"{url}/edit", data={"csrf_token": csrf(page), "lti_role": "Mentor",
                                    "global_role": "", "group_role": "contributor",
                                    "action": "save"})
    db.session.expire_all()
    assert db.session.get(LTIRoleMapping, mapping.id).group_role is GroupRole.CONTRIBUTOR
    confirm = admin.get(f"{url}/delete")
    assert admin.post(f"{url}/delete", data={"csrf_token": csrf(confirm)}).status_code == 303
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LTIRoleMapping)) == 0


def test_simulator_with_pasted_roles(admin, make_platform):
    platform = make_platform()
    url = f"/admin/platforms/{platform.id}/role-mappings/"
    assert result_of(admin.get(url, query_string={"roles": f"{LEARNER}\n{TA}"})) == (
        "user", "contributor")
    add(admin, platform, "TeachingAssistant", "editor", "manager")
    assert result_of(admin.get(url, query_string={"roles": TA})) == ("editor", "manager")


def test_simulator_with_a_logged_launch(admin, lms, browser, db):
    lms.launch(browser, roles=[INSTRUCTOR])
    log_id = db.session.scalar(sa.text("SELECT id FROM lti_launch_log"))
    page = admin.get(f"/admin/platforms/{lms.platform.id}/role-mappings/",
                     query_string={"launch": log_id})
    assert result_of(page) == ("advancedUser", "manager")


def test_try_an_edit_before_saving_it(admin, make_platform, db):
    platform = make_platform()
    page = admin.get(f"/admin/platforms/{platform.id}/role-mappings/new")
    response = admin.post(f"/admin/platforms/{platform.id}/role-mappings/new", data={
        "csrf_token": csrf(page), "lti_role": "Learner", "global_role": "manager",
        "group_role": "manager", "simulate_roles": LEARNER, "action": "try"})
    assert response.status_code == 200
    assert result_of(response) == ("manager", "manager")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LTIRoleMapping)) == 0
