"""The platform's keys: cached JWKS, one refresh on an unknown kid, outages, statement budget."""

import pytest
import sqlalchemy as sa

from lti_tool.models import LTILaunchLog, LTIPlatform


def last_log(db) -> LTILaunchLog:
    db.session.expire_all()
    return db.session.scalars(sa.select(LTILaunchLog).order_by(LTILaunchLog.id.desc())).first()


def platform(db, lms) -> LTIPlatform:
    db.session.expire_all()
    return db.session.get(LTIPlatform, lms.platform.id)


def test_first_launch_fetches_and_caches_the_keyset_then_no_more_fetches(browser, lms, db):
    assert lms.launch(browser).status_code == 303
    assert lms.server.requests == 1
    stored = platform(db, lms)
    assert [k["kid"] for k in stored.key_set["keys"]] == [lms.kid]
    assert stored.key_set_updated is not None
    for _ in range(3):
        assert lms.launch(browser).status_code == 303
    assert lms.server.requests == 1, "a normal launch makes no HTTP fetch"


def test_key_rotation_at_the_platform_is_picked_up_by_one_refresh(browser, lms, db):
    lms.launch(browser)
    lms.rotate_key()
    assert lms.launch(browser).status_code == 303
    assert lms.server.requests == 2
    assert [k["kid"] for k in platform(db, lms).key_set["keys"]] == ["moodle-key-2"]


@pytest.mark.parametrize(
    "mode, detail",
    [("error", "HTTP 500"), ("junk", "did not return JSON"), ("empty", "no RSA keys")],
)
def test_keyset_outage_fails_the_launch_cleanly_and_keeps_the_old_cache(
    browser, lms, db, mode, detail
):
    lms.launch(browser)
    old = platform(db, lms).key_set
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


def test_unknown_kids_refresh_at_most_once_per_interval(browser, lms, db):
    lms.launch(browser)
    before = lms.server.requests
    for _ in range(3):
        login = lms.login(browser)
        token = lms.sign(lms.claims(nonce=login.nonce), headers={"kid": "unknown"})
        assert lms.launch(browser, token=token, login=login).status_code == 401
    assert lms.server.requests == before + 1


def test_a_platform_added_later_works_without_a_restart(browser, lms, db, app):
    """Registrations are read from the database on every launch, in every worker."""
    from .lms import TestPlatform

    second = TestPlatform(issuer="https://moodle2.example.edu", client_id="other-client")
    try:
        login = second.login(browser)
        assert login.response.status_code == 403
        second.register(db, name="Second Moodle")
        assert second.launch(browser).status_code == 303
    finally:
        second.server.close()


def test_a_returning_users_launch_stays_within_twelve_sql_statements(browser, lms, db):
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
    assert response.status_code == 303
    assert len(statements) <= 12, "\n".join(statements)


def test_one_issuer_with_two_client_ids_launches_into_each_registration(browser, lms, db):
    from lti_tool.models import LTILaunchLog

    from .lms import TestPlatform, rsa_key

    second = TestPlatform(issuer=lms.issuer, client_id="second-client", deployment_id="9")
    second.kid, second.key = "second-key", rsa_key(3)
    second.published = [(second.key, second.kid)]
    try:
        second.register(db, name="Same Moodle, second tool")
        assert lms.launch(browser).status_code == 303
        assert second.launch(browser).status_code == 303
        db.session.expire_all()
        entries = db.session.scalars(sa.select(LTILaunchLog).order_by(LTILaunchLog.id)).all()
        assert [e.platform_id for e in entries] == [lms.platform.id, second.platform.id]
    finally:
        second.server.close()
