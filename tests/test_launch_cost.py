"""What a launch round trip costs the database: statements counted, not timed."""

from collections import Counter
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from lti_tool import extensions
from lti_tool.extensions import cache
from lti_tool.models import GroupRole, LTILaunchLog, LTIPlatform, LTIRoleMapping, RBACMembership
from lti_tool.services import platform_memory

from .conftest import csrf
from .lms import INSTRUCTOR


@contextmanager
def statements(db):
    """The SQL statements sent meanwhile (pool pings and transaction control aside)."""
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append(" ".join(statement.split()))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)


def kinds(sent: list[str]) -> Counter:
    return Counter(s.split(None, 1)[0].upper() for s in sent)


def warm(browser, lms) -> None:
    """Launch until this process remembers the platform (the first launch fetches its keys,
    a write of the platform that makes everyone read it afresh)."""
    for _ in range(2):
        assert lms.launch(browser).status_code == 200


def test_a_returning_students_round_trip_takes_few_statements(browser, lms, db):
    warm(browser, lms)  # the first launch provisions
    with statements(db) as login:
        made = lms.login(browser)
    with statements(db) as launch:
        response = lms.launch(browser, login=made)
    assert response.status_code == 200 and b"No media in this course yet" in response.data
    with statements(db) as reload:
        assert browser.get(response.headers["Content-Location"]).status_code == 200
    assert login == [], "the platform an earlier login found: from this process's memory"
    # user and mapping with course, group and membership; the mapping's last login; the
    # resource link's count; the launch log entry; then the course page it answers with: its
    # media. The platform and its role mappings: from memory, no platform having changed
    # since. The user (just signed in) and their role in the course (the launch's own): not
    # read again.
    assert kinds(launch) == {"SELECT": 2, "UPDATE": 2, "INSERT": 1}, launch
    assert not [s for s in launch if "lti_platform" in s or "lti_role_mapping" in s], launch
    # a reload reads only: the user (unless the session still holds it), the course with the
    # user's role, its media
    assert set(kinds(reload)) == {"SELECT"} and len(reload) <= 3, reload


def test_on_postgresql_the_launch_writes_in_a_transaction_and_its_page_reads_without(
        browser, lms, db):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite begins no transaction for a SELECT anyway")
    warm(browser, lms)
    seen: list[tuple[str, str]] = []

    def after(conn, cursor, statement, parameters, context, executemany):
        status = conn.connection.dbapi_connection.info.transaction_status.name
        seen.append((statement.split(None, 1)[0], status))

    sa.event.listen(db.engine, "after_cursor_execute", after)
    try:
        assert lms.launch(browser).status_code == 200
    finally:
        sa.event.remove(db.engine, "after_cursor_execute", after)
    *launch, page = seen
    assert {status for _, status in launch} == {"INTRANS"}, seen
    assert page == ("SELECT", "IDLE"), "no BEGIN and ROLLBACK around the page's read"


def test_a_launch_reads_the_platform_and_its_role_mappings_in_one_query(browser, lms, db):
    assert lms.launch(browser).status_code == 200
    made = lms.login(browser)
    platform_memory.platforms_changed()  # as after a change: the next launch reads afresh
    with statements(db) as launch:
        assert lms.launch(browser, login=made).status_code == 200
    platform_reads = [s for s in launch if "lti_platform" in s or "lti_role_mapping" in s]
    assert len(platform_reads) == 1 and "lti_role_mapping" in platform_reads[0], launch


def test_a_role_mapping_added_between_launches_applies_to_the_next(browser, lms, db):
    assert lms.launch(browser).status_code == 200
    membership = db.session.scalar(sa.select(RBACMembership))
    assert membership.role is GroupRole.MEMBER
    db.session.add(LTIRoleMapping(platform_id=lms.platform.id, lti_role="Learner",
                                  group_role=GroupRole.CONTRIBUTOR))
    db.session.commit()
    lms.platform.auto_sync_roles = True
    db.session.commit()
    assert lms.launch(browser).status_code == 200
    db.session.expire_all()
    assert db.session.scalar(sa.select(RBACMembership)).role is GroupRole.CONTRIBUTOR


def test_an_id_token_replayed_under_a_fresh_login_is_still_a_replay(browser, lms, db):
    first = lms.login(browser)
    token = lms.sign(lms.claims(nonce=first.nonce, roles=[INSTRUCTOR]))
    assert lms.launch(browser, token=token, login=first).status_code == 200
    fresh = lms.login(browser)
    response = lms.launch(browser, token=token, login=fresh)
    assert response.status_code == 401
    db.session.expire_all()
    [refused] = db.session.scalars(
        sa.select(LTILaunchLog).where(LTILaunchLog.success.is_(False))).all()
    assert refused.error_category == "nonce_replay"


def test_a_database_connection_dropped_while_idle_does_not_fail_the_next_request(
        browser, lms, db, monkeypatch):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("a SQLite file cannot drop the connection")
    monkeypatch.setattr(extensions, "IDLE_PING_SECONDS", 0)
    assert lms.launch(browser).status_code == 200
    db.session.remove()
    with db.engine.connect() as conn:
        pids = set(conn.execute(sa.text("SELECT pg_backend_pid()")).scalars())
    killer = sa.create_engine(db.engine.url)
    with killer.connect() as conn:
        for pid in pids:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    killer.dispose()
    assert lms.launch(browser).status_code == 200


# The memory of platforms (platform_memory): logins and launches


def switched_off_elsewhere(db, announced: bool = True) -> None:
    """What another worker or host does: the row changes and, as every ORM write does there,
    the platforms' generation in the shared cache with it; this process is not told. Not
    `announced`: a write outside the tool (SQL by hand)."""
    db.session.execute(sa.update(LTIPlatform).values(active=False))
    db.session.commit()
    if announced:
        cache.set(platform_memory.GENERATION_KEY, "written on another host", timeout=0)


def later(monkeypatch, seconds: float) -> None:
    now = platform_memory.time.monotonic() + seconds
    monkeypatch.setattr(platform_memory.time, "monotonic", lambda: now)


def test_a_platform_switched_off_here_refuses_the_next_login_at_once(browser, lms, db):
    assert lms.launch(browser).status_code == 200
    lms.platform.active = False
    db.session.commit()
    refused = lms.login(browser).response
    assert refused.status_code == 403 and b"switched off" in refused.data


def test_a_platform_switched_off_elsewhere_is_refused_by_the_launch_then_the_login(
        browser, lms, db, monkeypatch):
    warm(browser, lms)
    switched_off_elsewhere(db)
    # For a few seconds logins still go on to the LMS; the launch reads the platform afresh.
    login = lms.login(browser)
    assert login.params, "the login went on to the LMS"
    response = lms.launch(browser, login=login)
    assert response.status_code == 403 and b"switched off" in response.data
    later(monkeypatch, platform_memory.MEMORY_SECONDS + 0.1)
    refused = lms.login(browser).response
    assert refused.status_code == 403 and b"switched off" in refused.data
    db.session.expire_all()
    categories = [e.error_category for e in db.session.scalars(
        sa.select(LTILaunchLog).where(LTILaunchLog.success.is_(False)).order_by(LTILaunchLog.id))]
    assert categories == ["platform_inactive", "platform_inactive"]


def test_a_platform_switched_off_by_hand_is_refused_within_the_memory_seconds(
        browser, lms, db, monkeypatch):
    warm(browser, lms)
    switched_off_elsewhere(db, announced=False)
    # SQL by hand announces nothing: the memory serves its last few seconds
    assert lms.launch(browser).status_code == 200
    later(monkeypatch, platform_memory.MEMORY_SECONDS + 0.1)
    response = lms.launch(browser)
    assert response.status_code == 403 and b"switched off" in response.data


def test_a_platform_switched_off_in_the_admin_refuses_the_next_launch_at_once(
        browser, lms, db, admin):
    warm(browser, lms)
    login = lms.login(browser)
    platform = lms.platform
    edit = f"/admin/platforms/{platform.id}/edit"
    form = {"csrf_token": csrf(admin.get(edit)), "name": platform.name,
            "platform_id": platform.platform_id, "client_id": platform.client_id,
            "deployment_ids": "\n".join(platform.deployment_ids),
            "key_set_url": platform.key_set_url, "auth_token_url": platform.auth_token_url,
            "auth_login_url": platform.auth_login_url, "auto_create_users": "y"}  # not active
    assert admin.post(edit, data=form).status_code == 303
    response = lms.launch(browser, login=login)
    assert response.status_code == 403 and b"switched off" in response.data


def test_a_role_mapping_added_on_another_host_applies_to_the_next_launch(browser, lms, db):
    lms.platform.auto_sync_roles = True
    db.session.commit()
    warm(browser, lms)
    db.session.execute(sa.insert(LTIRoleMapping).values(
        platform_id=lms.platform.id, lti_role="Learner", group_role=GroupRole.CONTRIBUTOR))
    db.session.commit()
    cache.set(platform_memory.GENERATION_KEY, "written on another host", timeout=0)
    assert lms.launch(browser).status_code == 200
    db.session.expire_all()
    assert db.session.scalar(sa.select(RBACMembership)).role is GroupRole.CONTRIBUTOR


def test_a_deployment_added_elsewhere_is_let_in_at_once(browser, lms, db):
    assert lms.launch(browser).status_code == 200
    # Not announced (SQL by hand): a deployment the memory does not allow is read afresh.
    db.session.execute(sa.update(LTIPlatform).values(deployment_ids=["5", "7"]))
    db.session.commit()
    lms.deployment_id = "7"
    with statements(db) as login:
        made = lms.login(browser)
    assert made.params, "a deployment the memory does not know: read afresh, allowed"
    assert len(login) == 1
    assert lms.launch(browser, login=made, deployment_id="7").status_code == 200


def test_a_platform_written_through_the_tool_is_announced_to_the_other_hosts(lms, db):
    before = cache.get(platform_memory.GENERATION_KEY)
    lms.platform.name = "Moodle (renamed)"
    db.session.flush()
    assert cache.get(platform_memory.GENERATION_KEY) == before, "not before the commit"
    db.session.commit()
    announced = cache.get(platform_memory.GENERATION_KEY)
    assert announced != before
    lms.platform.name = "Moodle (renamed again)"
    db.session.flush()
    db.session.rollback()
    assert cache.get(platform_memory.GENERATION_KEY) == announced, "nothing was written"
