"""Roster sync (NRPS): reading paged rosters and applying them to the course group, against a test
platform that issues real tokens and serves paged memberships."""

import threading

import pytest
from sqlalchemy import func, select

from lti_tool.models import (
    GlobalRole,
    GroupRole,
    Job,
    JobState,
    LTIRoleMapping,
    LTIUserMapping,
    MembershipSource,
    RBACGroup,
    RBACMembership,
    RosterChange,
    RosterChangeKind,
    RosterStatus,
    RosterSync,
    User,
)
from lti_tool.services import jobs, nrps, nrps_jobs, nrps_reader

from . import nrps_platform
from .lms import INSTRUCTOR, LEARNER
from .nrps_platform import NRPS_CLAIM, member, members

nrps_lms = nrps_platform.nrps_lms  # the fixture

TEACHER = "27"


@pytest.fixture
def course(nrps_lms, lms, client, db):
    """Course 24 after a teacher's launch carrying the NRPS claim (the queued job not run)."""
    response = lms.launch(client, sub=TEACHER, roles=[INSTRUCTOR], name="Ada Teacher",
                          email="ada@example.edu", **{NRPS_CLAIM: nrps_lms.claim("24")})
    assert response.status_code == 200, response.data[:300]
    group = db.session.scalar(select(RBACGroup).where(RBACGroup.lti_context_id == "24"))
    assert group.memberships_url == nrps_lms.memberships_url("24")
    db.session.execute(Job.__table__.delete())
    db.session.commit()
    return group


def roster(db, group) -> dict[str, tuple[GroupRole, MembershipSource]]:
    """sub (or username for people without a mapping) -> (role, source)."""
    db.session.expire_all()
    rows = db.session.execute(
        select(RBACMembership.role, RBACMembership.source, LTIUserMapping.lti_user_id,
               User.username)
        .join(User, User.id == RBACMembership.user_id)
        .outerjoin(LTIUserMapping, LTIUserMapping.user_id == User.id)
        .where(RBACMembership.rbac_group_id == group.id))
    return {row.lti_user_id or row.username: (row.role, row.source) for row in rows}


def changes(db, record) -> list[tuple[str, str, GroupRole | None, GroupRole | None]]:
    return sorted(
        (c.kind.value, c.name, c.old_role, c.new_role)
        for c in db.session.scalars(select(RosterChange)
                                    .where(RosterChange.roster_sync_id == record.id)))


def count(db, model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


# Reading


@pytest.mark.parametrize("url, expected", [
    ("https://lms/m", "https://lms/m?limit=100"),
    ("https://lms/m?rlid=5&Role=Learner", "https://lms/m?rlid=5&Role=Learner&limit=100"),
    ("https://lms/m?limit=10&x=%2Fa", "https://lms/m?x=%2Fa&limit=100"),
])
def test_limit_is_merged_into_the_query(url, expected):
    assert nrps.with_limit(url, 100) == expected


@pytest.mark.parametrize("header, expected", [
    ('<https://c/m?page=AbC>; rel="next"', "https://c/m?page=AbC"),
    ('<https://c/m?page=1>; rel="current",<https://c/m?page=XyZ2>; REL="Next",'
     '<https://c/m?page=1>; rel="first"', "https://c/m?page=XyZ2"),
    ('<https://c/m?p=Q>; rel=next; title="a, b"', "https://c/m?p=Q"),
    ('<https://c/m?p=Q>; rel="next last"', "https://c/m?p=Q"),
    ('<https://c/m?page=1>; rel="last"', None),
    ("", None),
    (None, None),
])
def test_next_link_is_found_and_kept_as_sent(header, expected):
    assert nrps.next_link(header) == expected


def test_pages_are_followed_with_mixed_case_tokens_kept(nrps_lms, lms):
    nrps_lms.set_roster(members(250))
    nrps_lms.canvas_links = True
    pages = list(nrps.read_roster(lms.platform, nrps_lms.memberships_url("24", rlid="57")))
    assert [len(p) for p in pages] == [100, 100, 50]
    assert [m.sub for p in pages for m in p] == [str(i) for i in range(1, 251)]
    sent = nrps_lms.memberships_requests()
    assert sent[0].query == {"rlid": "57", "limit": "100"}
    # the platform knows its page tokens only in their exact case
    assert all(r.status == 200 for r in sent) and any(
        r.query.get("page", "").lower() != r.query.get("page") for r in sent[1:])


def test_a_platform_capping_the_page_size_is_followed(nrps_lms, lms):
    nrps_lms.set_roster(members(25))
    nrps_lms.max_limit = 10
    assert [len(p) for p in nrps.read_roster(lms.platform, nrps_lms.memberships_url())] == [
        10, 10, 5]


def test_a_paging_loop_is_an_incomplete_read(nrps_lms, lms):
    nrps_lms.set_roster(members(30))
    with pytest.raises(nrps.RosterError, match="do not end"):
        list(nrps.read_roster(lms.platform, nrps_lms.memberships_url(), limit=10, max_pages=2))


# Applying


def test_first_sync_adds_everyone_with_their_mapped_roles(nrps_lms, lms, course, db):
    nrps_lms.set_roster([member(TEACHER, "Instructor", name="Ada Teacher"),
                         member("318", name="Grace Hopper", email="g.hopper@example.edu"),
                         member("401", "TeachingAssistant", name="Alan Turing"),
                         member("402", status=None, name=None, email=None)])
    record = nrps.sync(course, trigger="command")
    assert (record.status, record.members, record.added, record.updated, record.removed,
            record.skipped) == (RosterStatus.OK, 4, 3, 0, 0, 0)
    assert roster(db, course) == {
        TEACHER: (GroupRole.MANAGER, MembershipSource.LAUNCH),
        "318": (GroupRole.MEMBER, MembershipSource.ROSTER),
        "401": (GroupRole.CONTRIBUTOR, MembershipSource.ROSTER),
        "402": (GroupRole.MEMBER, MembershipSource.ROSTER),
    }
    grace = db.session.scalar(select(User).join(LTIUserMapping).where(
        LTIUserMapping.lti_user_id == "318"))
    assert (grace.username, grace.name, grace.email) == (
        "g.hopper", "Grace Hopper", "g.hopper@example.edu")
    assert db.session.scalar(select(User.username).join(LTIUserMapping).where(
        LTIUserMapping.lti_user_id == "402")) == "lti1-402"
    assert changes(db, record) == [
        ("added", "Alan Turing", None, GroupRole.CONTRIBUTOR),
        ("added", "Grace Hopper", None, GroupRole.MEMBER),
        ("added", "LMS user 402", None, GroupRole.MEMBER),
    ]
    db.session.refresh(course)
    assert (course.roster_status, course.roster_error, course.roster_counts) == (
        RosterStatus.OK, "", {"members": 4, "added": 3, "updated": 0, "removed": 0,
                              "skipped": 0})
    assert course.roster_synced_at is not None


def test_a_person_added_by_sync_then_launching_is_the_same_user(nrps_lms, lms, course, db,
                                                              client):
    nrps_lms.set_roster([member("318", name="Grace Hopper")])
    nrps.sync(course, trigger="command")
    users = count(db, User)
    assert lms.launch(client, sub="318", roles=[LEARNER]).status_code == 200
    assert count(db, User) == users
    assert roster(db, course)["318"] == (GroupRole.MEMBER, MembershipSource.LAUNCH)


def test_names_and_emails_are_refreshed_and_kept_when_hidden(nrps_lms, lms, course, db):
    nrps_lms.set_roster([member("318", name="Grace Hopper", email="g@example.edu")])
    nrps.sync(course, trigger="command")
    nrps_lms.set_roster([member("318", name="Grace B. Hopper", email="grace@example.edu")])
    record = nrps.sync(course, trigger="command")
    assert (record.added, record.updated) == (0, 0)  # a profile is not a membership change
    user = db.session.scalar(select(User).join(LTIUserMapping).where(
        LTIUserMapping.lti_user_id == "318"))
    assert (user.name, user.email) == ("Grace B. Hopper", "grace@example.edu")
    # privacy settings hide them now: what the tool knows stays
    nrps_lms.set_roster([member("318", name=None, email=None)])
    nrps.sync(course, trigger="command")
    db.session.refresh(user)
    assert (user.name, user.email) == ("Grace B. Hopper", "grace@example.edu")


@pytest.mark.parametrize("auto_sync_roles", [True, False])
def test_role_changes_follow_auto_sync_roles(nrps_lms, lms, course, db, auto_sync_roles):
    nrps_lms.set_roster([member(TEACHER, "Instructor"), member("318"), member("401")])
    nrps.sync(course, trigger="command")
    lms.platform.auto_sync_roles = auto_sync_roles
    db.session.commit()
    # 318 becomes a TA; 401 loses nothing: the roster made them a member
    nrps_lms.set_roster([member(TEACHER, "Instructor"), member("318", "TeachingAssistant"),
                         member("401")])
    record = nrps.sync(course, trigger="command")
    if auto_sync_roles:
        assert record.updated == 1
        assert roster(db, course)["318"][0] is GroupRole.CONTRIBUTOR
        assert changes(db, record) == [
            ("updated", "Person 318", GroupRole.MEMBER, GroupRole.CONTRIBUTOR)]
    else:
        assert record.updated == 0
        assert roster(db, course)["318"][0] is GroupRole.MEMBER


def test_roster_lowers_its_own_roles_but_not_a_launchs(nrps_lms, lms, course, db):
    nrps_lms.set_roster([member(TEACHER, "Instructor"), member("401", "TeachingAssistant")])
    nrps.sync(course, trigger="command")
    # Moodle: a non-editing teacher launches as Instructor but is a Learner in NRPS
    nrps_lms.set_roster([member(TEACHER, "Learner"), member("401", "Learner")])
    record = nrps.sync(course, trigger="command")
    assert roster(db, course)[TEACHER][0] is GroupRole.MANAGER  # set by the launch
    assert roster(db, course)["401"][0] is GroupRole.MEMBER  # set by the roster
    assert changes(db, record) == [
        ("updated", "Person 401", GroupRole.CONTRIBUTOR, GroupRole.MEMBER)]


def test_platform_role_mappings_apply_as_in_a_launch(nrps_lms, lms, course, db):
    db.session.add(LTIRoleMapping(platform_id=lms.platform.id, lti_role="Mentor",
                                  global_role=GlobalRole.EDITOR, group_role=GroupRole.CONTRIBUTOR))
    db.session.commit()
    nrps_lms.set_roster([member("318", roles=[
        "http://purl.imsglobal.org/vocab/lis/v2/membership#Mentor"])])
    nrps.sync(course, trigger="command")
    assert roster(db, course)["318"][0] is GroupRole.CONTRIBUTOR
    assert db.session.scalar(select(User.global_role).join(LTIUserMapping).where(
        LTIUserMapping.lti_user_id == "318")) is GlobalRole.EDITOR


def test_without_auto_create_users_unknown_people_are_skipped(nrps_lms, lms, course, db):
    lms.platform.auto_create_users = False
    db.session.commit()
    nrps_lms.set_roster([member(TEACHER, "Instructor"), member("318"), member("319")])
    users = count(db, User)
    record = nrps.sync(course, trigger="command")
    assert (record.members, record.added, record.skipped) == (3, 0, 2)
    assert count(db, User) == users


@pytest.mark.parametrize("remove", [True, False])
def test_removal_rules(nrps_lms, lms, course, db, make_user, remove):
    lms.platform.remove_from_groups_on_unenroll = remove
    db.session.commit()
    nrps_lms.set_roster([member(TEACHER, "Instructor"), member("318"), member("319"),
                         member("320")])
    nrps.sync(course, trigger="command")
    guest = make_user("guest")  # added by hand by a manager: never removed
    db.session.add(RBACMembership(rbac_group_id=course.id, user_id=guest.id,
                                  source=MembershipSource.MANUAL))
    db.session.commit()
    # the teacher and 318 left; 319 is suspended (Inactive); 320 stays
    nrps_lms.set_roster([member("319", status="Inactive"), member("320")])
    record = nrps.sync(course, trigger="command")
    kept = set(roster(db, course))
    if remove:
        assert kept == {"320", "guest"}
        assert record.removed == 3
        assert [c[0] for c in changes(db, record)] == ["removed"] * 3
        assert {c[2] for c in changes(db, record)} == {GroupRole.MANAGER, GroupRole.MEMBER}
    else:
        assert kept == {TEACHER, "318", "319", "320", "guest"}
        assert record.removed == 0
    assert record.members == 1


def test_inactive_people_are_not_added(nrps_lms, lms, course, db):
    nrps_lms.set_roster([member("318", status="Inactive"), member("319", status="Deleted")])
    record = nrps.sync(course, trigger="command")
    assert (record.members, record.added) == (0, 0)
    assert set(roster(db, course)) == {TEACHER}


def test_a_sync_that_changes_nothing_writes_nothing(nrps_lms, lms, course, db):
    nrps_lms.set_roster([member(TEACHER, "Instructor", name="Ada Teacher",
                                email="ada@example.edu"), *members(30, start=100)])
    nrps.sync(course, trigger="command")
    statements = []
    from sqlalchemy import event

    def log(conn, cursor, statement, *args):
        words = statement.split()
        if words[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            statements.append(words[2 if words[0].upper() != "UPDATE" else 1].strip('"'))

    event.listen(db.engine, "before_cursor_execute", log)
    try:
        record = nrps.sync(course, trigger="command")
    finally:
        event.remove(db.engine, "before_cursor_execute", log)
    assert (record.added, record.updated, record.removed) == (0, 0, 0)
    # the sync's own record (started, finished), the course's status, the platform's answer
    assert set(statements) == {"roster_sync", "rbac_group", "lti_platform"}, statements
    assert count(db, RosterChange) == 30


def test_dry_run_diff_is_what_is_then_applied(nrps_lms, lms, course, db, make_user):
    lms.platform.remove_from_groups_on_unenroll = True
    db.session.commit()
    nrps_lms.set_roster([member(TEACHER, "Instructor"), *members(5), member("90", "Learner")])
    nrps.sync(course, trigger="command")
    nrps_lms.set_roster([member(TEACHER, "Instructor"), member("1", "TeachingAssistant"),
                         member("2", status="Inactive"), *members(3, start=3),
                         member("6", "Instructor"), member("100", name="New Person")])
    plan = nrps.plan_sync(course)
    assert plan.error == "" and plan.members == 7
    before = roster(db, course)
    assert roster(db, course) == before  # the dry run wrote nothing
    record = nrps.sync(course, trigger="manager")
    planned = sorted(
        [("added", c.name, c.old_role, c.new_role) for c in plan.to_add]
        + [("updated", c.name, c.old_role, c.new_role) for c in plan.role_changes]
        + [("removed", c.name, c.old_role, c.new_role) for c in plan.to_remove])
    assert planned == changes(db, record)
    assert {c.sub for c in plan.to_remove} == {"2", "90"}
    assert {(c.sub, c.user_id, c.new_role) for c in plan.to_add} == {
        ("6", None, GroupRole.MANAGER), ("100", None, GroupRole.MEMBER)}
    assert [(c.sub, c.old_role, c.new_role) for c in plan.role_changes] == [
        ("1", GroupRole.MEMBER, GroupRole.CONTRIBUTOR)]
    assert (record.added, record.updated, record.removed) == (2, 1, 2)
    assert plan.summary() == "7 members: would add 2, update 1, remove 2, skip 0"


# Failures: nobody removed or changed, the reason recorded


def _failing_setup(nrps_lms, lms, course, db):
    lms.platform.remove_from_groups_on_unenroll = True
    db.session.commit()
    nrps_lms.set_roster([member(TEACHER, "Instructor"), *members(5)])
    nrps.sync(course, trigger="command")
    # now three left, two joined, one changed role: none of it may happen on a failure
    nrps_lms.set_roster([member(TEACHER, "Instructor"), member("1", "TeachingAssistant"),
                         member("2"), *members(150, start=200)])
    return roster(db, course), count(db, User)


@pytest.mark.parametrize("failure, page, words, transient", [
    (401, 1, "refused the tool access", False),
    (403, 1, "refused the tool access", False),
    (500, 1, "HTTP 500", True),
    (503, 2, "HTTP 503", True),
    ("junk", 1, "not JSON", False),
    ("no-members", 1, "not a roster", False),
    ("junk", 2, "not JSON", False),
])
def test_failures_remove_nobody_and_record_why(nrps_lms, lms, course, db, failure, page, words,
                                               transient):
    before, users = _failing_setup(nrps_lms, lms, course, db)
    nrps_lms.page_failures = {page: failure}
    record, error = nrps.sync_with_error(course, trigger="command")
    assert record.status is RosterStatus.FAILED
    assert words in record.error and "Nobody was added, changed or removed" in record.error
    assert ("after 1 page read" in record.error) == (page == 2)
    assert getattr(error, "transient", False) is transient
    assert roster(db, course) == before
    assert count(db, User) == users
    assert changes(db, record) == []
    db.session.refresh(course)
    assert (course.roster_status, course.roster_error) == (RosterStatus.FAILED, record.error)
    assert course.roster_counts["members"] == 0


def test_a_timeout_removes_nobody(nrps_lms, lms, course, db, monkeypatch):
    before, _ = _failing_setup(nrps_lms, lms, course, db)
    monkeypatch.setattr(nrps_reader, "TIMEOUT", (2, 0.3))  # the setting, shortened for the test
    nrps_lms.slow_seconds = 2
    nrps_lms.page_failures = {2: "slow"}
    record = nrps.sync(course, trigger="command")
    assert record.status is RosterStatus.FAILED and "did not answer in time" in record.error
    assert roster(db, course) == before


def test_a_platform_that_answered_once_is_recorded_even_when_a_page_failed(nrps_lms, lms,
                                                                          course, db):
    _failing_setup(nrps_lms, lms, course, db)
    lms.platform.roster_answered_at = None
    db.session.commit()
    nrps_lms.page_failures = {2: 500}
    nrps.sync(course, trigger="command")
    db.session.refresh(lms.platform)
    assert lms.platform.roster_answered_at is not None


def test_a_failed_dry_run_says_why(nrps_lms, lms, course):
    nrps_lms.page_failures = {1: 403}
    plan = nrps.plan_sync(course)
    assert "refused the tool access" in plan.error and plan.to_add == []


def test_sync_refused_without_a_roster_address_or_with_nrps_off(nrps_lms, lms, course, db):
    lms.platform.enable_nrps = False
    db.session.commit()
    with pytest.raises(nrps.SyncRefused, match="switched off"):
        nrps.sync(course, trigger="command")
    lms.platform.enable_nrps = True
    course.memberships_url = None
    db.session.commit()
    with pytest.raises(nrps.SyncRefused, match="not told the tool"):
        nrps.sync(course, trigger="command")


# One sync of a course at a time


def test_two_syncs_of_one_course_run_once(nrps_lms, lms, course, db, app):
    nrps_lms.set_roster(members(150, start=100))
    nrps_lms.slow_seconds = 2
    nrps_lms.page_failures = {2: "slow"}  # keeps the first sync busy on its second page
    started, results = threading.Event(), []

    def first():
        with app.app_context():
            group = db.session.get(RBACGroup, course.id)
            started.set()
            results.append(nrps.sync(group, trigger="command").status)
            db.session.remove()

    thread = threading.Thread(target=first)
    thread.start()
    started.wait(10)
    # wait until the first sync is reading (its running record is committed)
    for _ in range(200):
        if nrps_lms.memberships_requests():
            break
        threading.Event().wait(0.02)
    with pytest.raises(nrps.SyncRefused, match="already running"):
        nrps.sync(course, trigger="manager")
    thread.join(30)
    assert results == [RosterStatus.OK]
    assert count(db, RosterSync) == 1
    assert len(roster(db, course)) == 151


def test_the_job_of_a_course_is_queued_once(nrps_lms, lms, course, db):
    first = nrps_jobs.queue_sync(course)
    db.session.commit()
    assert nrps_jobs.queue_sync(course).id == first.id
    assert first.subject == f"roster:{course.id}"


def test_the_job_syncs_and_retries_a_platform_outage(nrps_lms, lms, course, db):
    nrps_lms.set_roster([member(TEACHER, "Instructor"), *members(3)])
    nrps_lms.page_failures = {1: 503}
    job = nrps_jobs.queue_sync(course)
    db.session.commit()
    jobs.run(job.id)
    db.session.expire_all()
    assert job.state is JobState.WAITING and "HTTP 503" in job.error  # tried again later
    assert db.session.get(RBACGroup, course.id).roster_status is RosterStatus.FAILED
    nrps_lms.page_failures = {}
    job.run_after = None
    db.session.commit()
    assert jobs.run_waiting() == 1
    assert set(roster(db, course)) == {TEACHER, "1", "2", "3"}
    record = db.session.scalars(select(RosterSync).order_by(RosterSync.id.desc())).first()
    assert (record.trigger, record.added) == ("launch", 3)


# The launch's part


def test_a_teachers_launch_stores_the_address_and_queues_one_sync_when_stale(
        nrps_lms, lms, client, db):
    claim = {NRPS_CLAIM: nrps_lms.claim("24")}
    assert lms.launch(client, sub=TEACHER, roles=[INSTRUCTOR], **claim).status_code == 200
    group = db.session.scalar(select(RBACGroup).where(RBACGroup.lti_context_id == "24"))
    assert group.memberships_url == nrps_lms.memberships_url("24")
    queued = list(db.session.scalars(select(Job)))
    assert [(j.kind, j.subject, j.args["trigger"]) for j in queued] == [
        ("nrps.sync", f"roster:{group.id}", "launch")]
    assert queued[0].dispatched_at is not None  # handed to the workers after the commit
    # a second launch while it waits: still one job
    assert lms.launch(client, sub=TEACHER, roles=[INSTRUCTOR], **claim).status_code == 200
    assert count(db, Job) == 1
    # once synced, launches queue nothing until NRPS_SYNC_MAX_AGE has passed
    assert jobs.run_waiting() == 1
    assert lms.launch(client, sub=TEACHER, roles=[INSTRUCTOR], **claim).status_code == 200
    assert count(db, Job) == 1


def test_a_students_launch_stores_the_address_but_queues_nothing(nrps_lms, lms, client, db):
    assert lms.launch(client, sub="318", roles=[LEARNER],
                      **{NRPS_CLAIM: nrps_lms.claim("24")}).status_code == 200
    group = db.session.scalar(select(RBACGroup).where(RBACGroup.lti_context_id == "24"))
    assert group.memberships_url == nrps_lms.memberships_url("24")
    assert count(db, Job) == 0


def test_a_stale_course_is_synced_again_after_a_teachers_launch(nrps_lms, lms, client, db,
                                                                  course, app):
    nrps.sync(course, trigger="command")
    app.config["NRPS_SYNC_MAX_AGE"] = 1
    from datetime import UTC, datetime, timedelta
    course.roster_synced_at = datetime.now(UTC) - timedelta(hours=2)
    db.session.commit()
    assert lms.launch(client, sub=TEACHER, roles=[INSTRUCTOR],
                      **{NRPS_CLAIM: nrps_lms.claim("24")}).status_code == 200
    assert count(db, Job) == 1


@pytest.mark.parametrize("url", [
    "https://evil.example.com/nrps/24/memberships",
    "http://lms.example.edu/nrps/24/memberships",  # the platform's host, but not https
    "file:///etc/passwd",
    ["not", "a", "url"],
])
def test_a_memberships_url_off_the_platforms_hosts_is_refused(nrps_lms, lms, client, db, url):
    assert lms.launch(client, sub=TEACHER, roles=[INSTRUCTOR], **{NRPS_CLAIM: {
        "context_memberships_url": url, "service_versions": ["2.0"]}}).status_code == 200
    group = db.session.scalar(select(RBACGroup).where(RBACGroup.lti_context_id == "24"))
    assert group.memberships_url is None
    assert count(db, Job) == 0


def test_the_issuers_host_is_accepted_over_https(nrps_lms, lms):
    url = "https://lms.example.edu/mod/lti/services.php/CourseSection/24/bindings/5/memberships"
    assert nrps.check_memberships_url(lms.platform, url) == url


def test_no_address_is_kept_when_the_platform_has_nrps_off(nrps_lms, lms, client, db):
    lms.platform.enable_nrps = False
    db.session.commit()
    assert lms.launch(client, sub=TEACHER, roles=[INSTRUCTOR],
                      **{NRPS_CLAIM: nrps_lms.claim("24")}).status_code == 200
    group = db.session.scalar(select(RBACGroup).where(RBACGroup.lti_context_id == "24"))
    assert group.memberships_url is None and count(db, Job) == 0


def test_a_sync_records_who_asked(nrps_lms, lms, course, db, make_user):
    manager = make_user("mgr")
    record = nrps.sync(course, trigger="manager", user=manager)
    assert (record.trigger, record.triggered_by_id) == ("manager", manager.id)
    assert record.finished_at is not None and record.status is RosterStatus.OK
    assert RosterChangeKind.ADDED  # the kinds recorded are the model's


def test_usernames_taken_before_or_within_a_page_get_a_number(nrps_lms, lms, course, db,
                                                             make_user):
    make_user("grace")
    nrps_lms.set_roster([member("318", email="grace@a.example"),
                         member("319", email="grace@b.example"),
                         member("320", email="grace@c.example")])
    assert nrps.sync(course, trigger="command").added == 3
    assert sorted(db.session.scalars(select(User.username).where(
        User.username.like("grace%")))) == ["grace", "grace-2", "grace-3", "grace-4"]


def test_a_course_the_platform_no_longer_knows_loses_its_address(nrps_lms, lms, course, db):
    nrps_lms.set_roster([member(TEACHER, "Instructor")], "24")
    del nrps_lms.courses["24"]  # the platform answers 404
    record = nrps.sync(course, trigger="command")
    assert "404" in record.error and "no longer in it" in record.error
    db.session.refresh(course)
    assert course.memberships_url is None and course.roster_status is RosterStatus.FAILED
    # the next launch from the course brings it back
    assert nrps.refusal(course).startswith("The platform has not told the tool")


def test_sync_dry_run_returns_unsaved_counts(nrps_lms, lms, course, db):
    nrps_lms.set_roster([member(TEACHER, "Instructor"), *members(4, start=100)])
    record = nrps.sync(course, trigger="manager", dry_run=True)
    assert (record.status, record.members, record.added, record.id) == (
        RosterStatus.OK, 5, 4, None)
    assert count(db, RosterSync) == 0 and set(roster(db, course)) == {TEACHER}


def test_a_queued_sync_gives_way_to_one_already_running(nrps_lms, lms, course, db, app):
    nrps_lms.set_roster(members(150, start=100))
    nrps.sync(course, trigger="command")  # so the next read writes nothing while it waits
    nrps_lms.log.clear()
    nrps_lms.slow_seconds = 2
    nrps_lms.page_failures = {2: "slow"}
    job = nrps_jobs.queue_sync(course)
    db.session.commit()
    done = threading.Event()

    def manager():
        with app.app_context():
            nrps.sync(db.session.get(RBACGroup, course.id), trigger="manager")
            db.session.remove()
            done.set()

    thread = threading.Thread(target=manager)
    thread.start()
    for _ in range(200):
        if nrps_lms.memberships_requests():
            break
        threading.Event().wait(0.02)
    assert jobs.run(job.id)  # runs, finds the manager's sync running, and stops quietly
    thread.join(30)
    assert done.is_set()
    db.session.expire_all()
    assert db.session.get(Job, job.id).state is JobState.DONE
    assert [r.trigger for r in db.session.scalars(select(RosterSync))] == ["command", "manager"]


def test_a_dry_run_records_that_the_platform_answered(nrps_lms, lms, course, db):
    assert lms.platform.roster_answered_at is None
    nrps.plan_sync(course)
    db.session.commit()
    db.session.refresh(lms.platform)
    assert lms.platform.roster_answered_at is not None
