"""What course managers and admins see of roster sync: the dry-run diff, applying it, the result,
the history, the course page's last sync, and the admin's course and platform pages."""

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from lti_tool.models import (
    Category,
    GroupRole,
    MembershipSource,
    RBACGroup,
    RBACMembership,
    RosterStatus,
    RosterSync,
    User,
)

from . import nrps_platform
from .conftest import HttpsClient, csrf
from .lms import INSTRUCTOR, LEARNER
from .nrps_platform import NRPS_CLAIM, member

nrps_lms = nrps_platform.nrps_lms  # the fixture

REFERER = {"Referer": "https://tool.example.org/media/"}
ROSTER = [
    member("318", "Instructor", name="Grace Hopper"),
    member("700", "Instructor", name="Alan Turing"),
    member("1", name="Ada Lovelace"),
    member("2", name="Edsger Dijkstra"),
    member("3", name="Barbara Liskov"),
]


def text(response) -> str:
    """The page's text, tags and runs of white space collapsed (what a reader sees)."""
    page = re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))
    return html.unescape(re.sub(r"\s+", " ", page))


def client_of(app) -> HttpsClient:
    return HttpsClient(app, app.response_class, use_cookies=True)


def launch_as(nrps, client, sub: str, name: str, role: str = LEARNER, context: str = "24"):
    given, _, family = name.partition(" ")
    response = nrps.lms.launch(
        client, roles=[role], sub=sub, name=name, given_name=given, family_name=family,
        ext={"user_username": f"u{sub}"}, context={"id": context, "title": f"Course {context}"},
        **{NRPS_CLAIM: nrps.claim(context)})
    assert response.status_code == 200, response.data[:300]
    return response


def course(db, context: str = "24") -> Category:
    return db.session.scalar(sa.select(Category).where(Category.lti_context_id == context))


def group_members(db) -> dict[str, GroupRole]:
    db.session.expire_all()
    rows = db.session.execute(
        sa.select(User.name, RBACMembership.role).join(RBACMembership.user)
        .join(RBACMembership.group).where(RBACGroup.lti_context_id == "24"))
    return {name: role for name, role in rows}


@pytest.fixture
def teacher(app, browser, nrps_lms, db):
    """Grace Hopper teaches course 24 (its manager); Alan Turing and Leo Leaving came in as
    students by launches, Hand Added was added by hand; the roster is ROSTER, and this LMS
    removes people who left the course."""
    launch_as(nrps_lms, browser, "318", "Grace Hopper", INSTRUCTOR)
    for sub, name in (("700", "Alan Turing"), ("800", "Leo Leaving")):
        launch_as(nrps_lms, client_of(app), sub, name)
    hand = User(username="hand", name="Hand Added")
    group = db.session.scalar(sa.select(RBACGroup).where(RBACGroup.lti_context_id == "24"))
    db.session.add(RBACMembership(group=group, user=hand, source=MembershipSource.MANUAL))
    nrps_lms.lms.platform.remove_from_groups_on_unenroll = True
    db.session.commit()
    nrps_lms.set_roster(ROSTER)
    return browser


def roster_url(db) -> str:
    return f"/media/category/{course(db).id}/roster"


def apply(client, db, page=None):
    page = page or client.get(roster_url(db))
    return client.post(roster_url(db), headers=REFERER, data={"csrf_token": csrf(page)})


# who may


def test_students_and_teachers_of_other_courses_are_refused(app, teacher, nrps_lms, db):
    student = client_of(app)
    launch_as(nrps_lms, student, "1", "Ada Lovelace")
    other = client_of(app)
    launch_as(nrps_lms, other, "900", "Other Teacher", INSTRUCTOR, context="25")
    url = roster_url(db)
    for client in (student, other):
        for path in (url, f"{url}/history"):
            assert client.get(path).status_code == 403
        assert client.post(url, headers=REFERER, data={}).status_code in (400, 403)
    assert teacher.get(f"/media/category/{course(db, '25').id}/roster").status_code == 403
    assert b"Sync the class list" not in student.get(f"/media/category/{course(db).id}").data
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RosterSync)) == 0


# the diff, then applying it


def test_the_diff_names_everyone_and_applying_does_exactly_that(teacher, db):
    before = group_members(db)
    page = teacher.get(roster_url(db))
    assert page.status_code == 200
    shown = text(page)
    assert "The LMS lists 5 people in this course" in shown
    assert "3 to add, 1 role change, 1 to remove" in shown
    for name in ("Ada Lovelace", "Edsger Dijkstra", "Barbara Liskov", "Alan Turing",
                 "Leo Leaving"):
        assert name in shown
    assert "Hand Added" not in shown, "people added by hand are never removed"
    assert group_members(db) == before, "the dry run changes nobody"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RosterSync)) == 0

    response = apply(teacher, db, page)
    assert response.status_code == 303
    sync = db.session.scalar(sa.select(RosterSync))
    assert response.headers["Location"].endswith(f"{roster_url(db)}/{sync.id}")
    assert (sync.added, sync.updated, sync.removed, sync.skipped, sync.members) == (3, 1, 1, 0, 5)
    result = text(teacher.get(response.headers["Location"]))
    assert "5 people: 3 added, 1 changed, 1 removed, 0 skipped" in result
    added = result[result.index("Added (3)"):result.index("Role changes")]
    assert all(n in added for n in ("Ada Lovelace", "Edsger Dijkstra", "Barbara Liskov"))
    assert "Alan Turing: student (views) → teacher (manages the course)" in result
    assert "Leo Leaving, was student (views)" in result
    assert group_members(db) == {
        "Grace Hopper": GroupRole.MANAGER, "Alan Turing": GroupRole.MANAGER,
        "Ada Lovelace": GroupRole.MEMBER, "Edsger Dijkstra": GroupRole.MEMBER,
        "Barbara Liskov": GroupRole.MEMBER, "Hand Added": GroupRole.MEMBER}

    again = text(teacher.get(roster_url(db)))
    assert "0 to add, 0 role changes, 0 to remove" in again


def test_people_without_an_account_are_skipped_and_the_page_says_why(teacher, nrps_lms, db):
    nrps_lms.lms.platform.auto_create_users = False
    db.session.commit()
    page = teacher.get(roster_url(db))
    shown = text(page)
    assert "0 to add, 1 role change, 1 to remove" in shown and "3 skipped" in shown
    skipped = shown[shown.index("Skipped (3)"):]
    assert all(n in skipped for n in ("Ada Lovelace", "Edsger Dijkstra", "Barbara Liskov"))
    assert "accounts are not created for people from this LMS" in skipped
    result = text(teacher.get(apply(teacher, db, page).headers["Location"]))
    assert "0 added, 1 changed, 1 removed, 3 skipped" in result
    assert "Skipped 3: they have no account in the media tool yet" in result
    assert "Ada Lovelace" not in group_members(db)


def test_a_sync_already_running_is_not_started_twice(teacher, db):
    from lti_tool.extensions import cache
    from lti_tool.services import nrps

    page = teacher.get(roster_url(db))
    group = db.session.scalar(sa.select(RBACGroup).where(RBACGroup.lti_context_id == "24"))
    assert cache.add(f"{nrps.LOCK_KEY}{group.id}", 1)  # another worker's sync of the course
    before = group_members(db)
    response = apply(teacher, db, page)
    assert response.status_code == 409
    assert "already running" in text(response)
    assert group_members(db) == before
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RosterSync)) == 0


def test_applying_needs_the_form_token(teacher, db):
    before = group_members(db)
    response = teacher.post(roster_url(db), headers=REFERER, data={})
    assert response.status_code == 400
    assert group_members(db) == before
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RosterSync)) == 0


@pytest.mark.parametrize("failure, reason", [
    ("token", "IMS LTI Names and Role Provisioning"),
    ("second page", "Sync incomplete (after 1 page read)"),
])
def test_a_failed_sync_says_why_and_changes_nobody(teacher, nrps_lms, db, failure, reason):
    before = group_members(db)
    page = teacher.get(roster_url(db))
    if failure == "token":
        nrps_lms.revoke_tokens()  # the dry run's token is refused: a new one is asked for
        nrps_lms.token_failure = "invalid_scope"
    else:
        nrps_lms.max_limit = 2
        nrps_lms.page_failures = {2: 500}
    response = apply(teacher, db, page)
    assert response.status_code == 303
    result = text(teacher.get(response.headers["Location"]))
    assert "Failed" in result and reason in result
    assert "Nobody was added, changed or removed" in result
    assert group_members(db) == before, "Leo Leaving is still there"
    course_page = text(teacher.get(f"/media/category/{course(db).id}"))
    assert "failed" in course_page and reason in course_page
    history = text(teacher.get(f"{roster_url(db)}/history"))
    assert "Failed" in history and reason in history


def test_a_failing_platform_shows_its_reason_on_the_diff(teacher, nrps_lms, db):
    nrps_lms.token_failure = "invalid_scope"
    page = text(teacher.get(roster_url(db)))
    assert "could not be read from the LMS" in page
    assert "IMS LTI Names and Role Provisioning" in page
    assert "Apply these changes" not in page


def test_a_course_without_its_class_list_address_says_how_to_get_it(browser, lms, db):
    lms.launch(browser, roles=[INSTRUCTOR])  # no Names and Roles claim
    page = text(browser.get(f"/media/category/{course(db).id}/roster"))
    assert "Open the tool once from this course's page in the LMS as a teacher" in page
    assert "Apply these changes" not in page


def test_class_lists_switched_off_for_the_lms_say_so(teacher, nrps_lms, db):
    nrps_lms.lms.platform.enable_nrps = False
    db.session.commit()
    page = text(teacher.get(roster_url(db)))
    assert "switched off" in page and "Apply these changes" not in page
    assert nrps_lms.memberships_requests() == []


# the course page, the history


def test_the_course_page_shows_its_managers_the_last_sync(teacher, db):
    page = text(teacher.get(f"/media/category/{course(db).id}"))
    assert "Sync the class list" in page and "not been synced from the LMS yet" in page
    apply(teacher, db)
    page = text(teacher.get(f"/media/category/{course(db).id}"))
    assert re.search(r"Class list last synced from the LMS \d{1,2} \w{3} \d{4} \d\d:\d\d UTC: "
                     r"5 people, 3 added, 1 changed, 1 removed, 0 skipped", page)
    assert "NRPS" not in page and "RBAC" not in page


def test_the_history_lists_each_sync_with_who_started_it(teacher, nrps_lms, db):
    first = apply(teacher, db).headers["Location"]
    nrps_lms.set_roster(ROSTER[:-1])  # Barbara Liskov leaves
    second = apply(teacher, db).headers["Location"]
    history = teacher.get(f"{roster_url(db)}/history")
    shown = text(history)
    assert shown.count("Grace Hopper (a course manager)") == 2
    links = re.findall(rb'href="([^"]*/roster/\d+)"', history.data)
    assert [link.decode() for link in links] == [second.removeprefix("https://tool.example.org"),
                                                 first.removeprefix("https://tool.example.org")]
    assert "Barbara Liskov, was student (views)" in text(teacher.get(second))


def test_the_history_pages_by_key(teacher, db):
    group = db.session.scalar(sa.select(RBACGroup).where(RBACGroup.lti_context_id == "24"))
    start = datetime.now(UTC) - timedelta(days=60)
    db.session.add_all(RosterSync(rbac_group_id=group.id, trigger="launch", members=n,
                                  status=RosterStatus.OK, started_at=start + timedelta(hours=n))
                       for n in range(51))
    db.session.commit()
    first = teacher.get(f"{roster_url(db)}/history")
    assert len(re.findall(rb'/roster/\d+"', first.data)) == 50
    assert "automatically, after a teacher opened the tool" in text(first)
    older = re.search(rb'href="([^"]*before=\d+)" rel="next"', first.data).group(1).decode()
    second = teacher.get(older.replace("&amp;", "&"))
    assert len(re.findall(rb'/roster/\d+"', second.data)) == 1
    assert b'rel="next"' not in second.data


def test_another_courses_sync_is_not_found_here(teacher, nrps_lms, db):
    result = apply(teacher, db).headers["Location"]
    sync_id = result.rsplit("/", 1)[1]
    launch_as(nrps_lms, teacher, "318", "Grace Hopper", INSTRUCTOR, context="25")
    other = f"/media/category/{course(db, '25').id}/roster"
    assert teacher.get(other).status_code == 200, "she manages course 25 too"
    assert teacher.get(f"{other}/{sync_id}").status_code == 404
    assert teacher.get(f"{roster_url(db)}/{int(sync_id) + 1}").status_code == 404


# admin pages


def test_admin_pages_show_the_last_sync_and_whether_the_lms_answers(admin, teacher, nrps_lms,
                                                                    db):
    platform_page = f"/admin/platforms/{nrps_lms.lms.platform.id}"
    assert "Has never answered a roster request (Names and Roles may be off in the LMS)" in text(
        admin.get(platform_page))
    apply(teacher, db)
    assert re.search(r"Answered a roster request on \d{4}-\d\d-\d\d",
                     text(admin.get(platform_page)))
    shown = text(admin.get(f"/admin/categories/{course(db).id}"))
    assert re.search(r"Last roster sync \(Names and Roles, NRPS\): \d{4}-\d\d-\d\d \d\d:\d\d UTC, "
                     r"5 members: 3 added, 1 updated, 1 removed, 0 skipped", shown)
    page = teacher.get(roster_url(db))
    nrps_lms.revoke_tokens()
    nrps_lms.token_failure = "invalid_scope"
    apply(teacher, db, page)
    shown = text(admin.get(f"/admin/categories/{course(db).id}"))
    assert "failed" in shown and "IMS LTI Names and Role Provisioning" in shown
