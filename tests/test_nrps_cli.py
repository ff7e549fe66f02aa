"""`flask nrps sync`: rosters synced from the command line, one summary line per course."""

import pytest
from sqlalchemy import select

from lti_tool.models import Job, RBACGroup, RBACMembership, RosterSync

from . import nrps_platform
from .lms import INSTRUCTOR
from .nrps_platform import NRPS_CLAIM, member, members

nrps_lms = nrps_platform.nrps_lms  # the fixture


def launch_course(lms, nrps, client, db, context: str, title: str) -> RBACGroup:
    response = lms.launch(client, sub="27", roles=[INSTRUCTOR],
                          context={"id": context, "label": title[:4], "title": title},
                          **{NRPS_CLAIM: nrps.claim(context)})
    assert response.status_code == 200
    db.session.execute(Job.__table__.delete())  # the launch's own queued sync: not run here
    db.session.commit()
    return db.session.scalar(select(RBACGroup).where(RBACGroup.lti_context_id == context))


@pytest.fixture
def courses(nrps_lms, lms, client, db):
    history = launch_course(lms, nrps_lms, client, db, "24", "Modern History")
    physics = launch_course(lms, nrps_lms, client, db, "31", "Physics")
    nrps_lms.set_roster([member("27", "Instructor"), *members(249, start=100)], "24")
    nrps_lms.set_roster([member("27", "Instructor"), *members(3, start=500)], "31")
    return history, physics


def test_sync_every_course_of_every_platform(courses, runner, db):
    result = runner.invoke(args=["nrps", "sync"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "250 members: 249 added, 0 updated, 0 removed, 0 skipped (Modern History, context 24)",
        "4 members: 3 added, 0 updated, 0 removed, 0 skipped (Physics, context 31)",
    ]
    assert db.session.scalar(select(RosterSync.trigger)) == "command"


def test_sync_one_course_of_one_platform(courses, runner, lms, db):
    result = runner.invoke(args=["nrps", "sync", "--platform", lms.platform.name,
                                 "--context", "31"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "4 members: 3 added, 0 updated, 0 removed, 0 skipped (Physics, context 31)\n")


def test_dry_run_says_what_it_would_do_and_changes_nothing(courses, runner, db):
    history, _ = courses
    result = runner.invoke(args=["nrps", "sync", "--context", "24", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "250 members: would add 249, update 0, remove 0, skip 0 (Modern History, context 24)\n")
    assert len(db.session.scalars(select(RBACMembership).where(
        RBACMembership.rbac_group_id == history.id)).all()) == 1
    assert db.session.scalar(select(RosterSync)) is None


def test_a_failed_course_is_reported_and_exits_1(courses, runner, nrps_lms):
    nrps_lms.page_failures = {2: 503}
    result = runner.invoke(args=["nrps", "sync", "--context", "24"])
    assert result.exit_code == 1
    assert result.output.startswith("Failed (Modern History, context 24): Sync incomplete "
                                    "(after 1 page read)")
    assert "Nobody was added, changed or removed." in result.output


@pytest.mark.parametrize("args, message", [
    (["--platform", "Nope"], "Error: Invalid value for '--platform': no platform named 'Nope'"),
    (["--context", "99"], "Error: Invalid value for '--context': no course of a platform with "
                          "NRPS on has context ID '99'"),
    (["--platform", "Test Moodle", "--context", "99"],
     "Error: Invalid value for '--context': no course of 'Test Moodle' has context ID '99'"),
])
def test_unknown_platform_or_context(courses, runner, args, message):
    result = runner.invoke(args=["nrps", "sync", *args])
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.output


def test_a_platform_with_nrps_off(courses, runner, lms, db):
    lms.platform.enable_nrps = False
    db.session.commit()
    result = runner.invoke(args=["nrps", "sync", "--platform", "Test Moodle"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: Invalid value for '--platform': roster sync")
    result = runner.invoke(args=["nrps", "sync"])
    assert result.exit_code == 0
    assert result.output.startswith("No course has a roster address yet")
