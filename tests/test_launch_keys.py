"""The platform's keys: cached JWKS, one refresh on an unknown kid, outages, statement budget."""

import time
import uuid

import pytest
import sqlalchemy as sa

from lti_tool.models import LTILaunchLog, LTIPlatform
from lti_tool.services import jwks
from lti_tool.services.jwks import MAX_REFRESHES, MIN_REFRESH_GAP, REFRESH_WINDOW


class FakeClock:
    """The time the keyset refresh limits are measured with, moved on by the test."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(jwks, "clock", fake)
    return fake


def last_log(db) -> LTILaunchLog:
    db.session.expire_all()
    return db.session.scalars(sa.select(LTILaunchLog).order_by(LTILaunchLog.id.desc())).first()


def platform(db, lms) -> LTIPlatform:
    db.session.expire_all()
    return db.session.get(LTIPlatform, lms.platform.id)


def test_first_launch_fetches_and_caches_the_keyset_then_no_more_fetches(browser, lms, db):
    assert lms.launch(browser).status_code == 200
    assert lms.server.requests == 1
    stored = platform(db, lms)
    assert [k["kid"] for k in stored.key_set["keys"]] == [lms.kid]
    assert stored.key_set_updated is not None
    for _ in range(3):
        assert lms.launch(browser).status_code == 200
    assert lms.server.requests == 1, "a normal launch makes no HTTP fetch"


def test_key_rotation_at_the_platform_is_picked_up_by_one_refresh(browser, lms, db, clock):
    lms.launch(browser)
    clock.advance(MIN_REFRESH_GAP)
    lms.rotate_key()
    assert lms.launch(browser).status_code == 200
    assert lms.server.requests == 2
    assert [k["kid"] for k in platform(db, lms).key_set["keys"]] == ["moodle-key-2"]
    for _ in range(3):  # the remembered platform had the old keys: forgotten with the refresh
        assert lms.launch(browser).status_code == 200
    assert lms.server.requests == 2


@pytest.mark.parametrize(
    "mode, detail",
    [("error", "HTTP 500"), ("junk", "did not return JSON"), ("empty", "no RSA keys")],
)
def test_keyset_outage_fails_the_launch_cleanly_and_keeps_the_old_cache(
    browser, lms, db, mode, detail, clock
):
    lms.launch(browser)
    old = platform(db, lms).key_set
    clock.advance(MIN_REFRESH_GAP)
    lms.rotate_key()
    lms.server.mode = mode
    response = lms.launch(browser, roles=["Instructor"])
    assert response.status_code == 502
    assert detail.encode() in response.data
    entry = last_log(db)
    assert entry.error_category == "jwks_unavailable" and detail in entry.error_message
    assert platform(db, lms).key_set == old


def test_a_platform_that_does_not_answer_in_time_fails_the_launch(browser, lms, db, app):
    app.config["JWKS_FETCH_TIMEOUT"] = 1
    lms.server.mode, lms.server.delay = "slow", 2
    response = lms.launch(browser)
    assert response.status_code == 502
    assert last_log(db).error_category == "jwks_unavailable"
    assert "did not answer within 1 s" in last_log(db).error_message


def launch_with_kid(browser, lms, kid: str):
    login = lms.login(browser)
    token = lms.sign(lms.claims(nonce=login.nonce), headers={"kid": kid})
    return lms.launch(browser, token=token, login=login)


def test_one_unknown_kid_refreshes_at_most_once_per_interval(browser, lms, db, clock, app):
    lms.launch(browser)
    before = lms.server.requests
    interval = app.config["JWKS_REFRESH_INTERVAL"]
    for _ in range(3):
        clock.advance(MIN_REFRESH_GAP)
        assert launch_with_kid(browser, lms, "unknown").status_code == 401
    assert lms.server.requests == before + 1
    assert "once per" in last_log(db).error_message
    clock.advance(interval)
    assert launch_with_kid(browser, lms, "unknown").status_code == 401
    assert lms.server.requests == before + 2


def test_the_refresh_interval_is_a_setting(browser, lms, db, clock, app):
    app.config["JWKS_REFRESH_INTERVAL"] = 5
    lms.launch(browser)
    clock.advance(MIN_REFRESH_GAP)
    launch_with_kid(browser, lms, "unknown")
    before = lms.server.requests
    clock.advance(5)
    launch_with_kid(browser, lms, "unknown")
    assert lms.server.requests == before + 1


def test_two_rotations_seconds_apart_are_each_picked_up(browser, lms, db, clock):
    """A platform that rotates again seconds after the tool refreshed is looked up again."""
    assert lms.launch(browser).status_code == 200
    for n in (1, 2):
        clock.advance(MIN_REFRESH_GAP)
        lms.rotate_key(n)
        response = lms.launch(browser)
        assert response.status_code == 200, response.data[:300]
    assert lms.server.requests == 3
    assert [k["kid"] for k in platform(db, lms).key_set["keys"]] == ["moodle-key-3"]


def test_a_miss_right_after_a_refresh_waits_for_the_floor(browser, lms, db, clock):
    lms.launch(browser)
    lms.rotate_key()
    assert lms.launch(browser).status_code == 401
    assert f"less than {MIN_REFRESH_GAP} s ago" in last_log(db).error_message
    clock.advance(MIN_REFRESH_GAP)
    assert lms.launch(browser).status_code == 200
    assert lms.server.requests == 2


def test_a_flood_of_made_up_kids_fetches_a_few_times_a_minute(browser, lms, db, clock):
    lms.launch(browser)
    clock.advance(REFRESH_WINDOW)
    before = lms.server.requests
    for _ in range(40):  # one made-up kid every 3 s for two minutes
        clock.advance(3)
        assert launch_with_kid(browser, lms, uuid.uuid4().hex).status_code == 401
    assert lms.server.requests - before <= 2 * MAX_REFRESHES
    assert lms.server.requests - before >= MAX_REFRESHES, "the limit is per window, not forever"


def test_a_platform_added_later_works_without_a_restart(browser, lms, db, app):
    """Registrations are read from the database on every launch, in every worker."""
    from .lms import TestPlatform

    second = TestPlatform(issuer="https://moodle2.example.edu", client_id="other-client")
    try:
        login = second.login(browser)
        assert login.response.status_code == 403
        second.register(db, name="Second Moodle")
        assert second.launch(browser).status_code == 200
    finally:
        second.server.close()


def test_a_returning_users_launch_stays_within_twelve_sql_statements(browser, lms, db):
    """The launch and the course page it answers with."""
    lms.launch(browser)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    login = lms.login(browser)
    token = lms.sign(lms.claims(nonce=login.nonce))
    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        response = browser.post("/lti/launch", data={"id_token": token, "state": login.state})
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    assert response.status_code == 200
    assert len(statements) <= 12, "\n".join(statements)


def test_one_issuer_with_two_client_ids_launches_into_each_registration(browser, lms, db):
    from lti_tool.models import LTILaunchLog

    from .lms import TestPlatform, rsa_key

    second = TestPlatform(issuer=lms.issuer, client_id="second-client", deployment_id="9")
    second.kid, second.key = "second-key", rsa_key(3)
    second.published = [(second.key, second.kid)]
    try:
        second.register(db, name="Same Moodle, second tool")
        assert lms.launch(browser).status_code == 200
        assert second.launch(browser).status_code == 200
        db.session.expire_all()
        entries = db.session.scalars(sa.select(LTILaunchLog).order_by(LTILaunchLog.id)).all()
        assert [e.platform_id for e in entries] == [lms.platform.id, second.platform.id]
    finally:
        second.server.close()
