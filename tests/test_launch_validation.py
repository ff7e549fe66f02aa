"""Launch validation: what the certification requires a tool to refuse, and to accept."""

import base64
import json
import time

import jwt
import pytest
import sqlalchemy as sa

from lti_tool.models import LaunchType, LTILaunchLog, User

from .lms import DROP, INSTRUCTOR, LTI, rsa_key


def b64(data: dict | str) -> str:
    raw = data if isinstance(data, str) else json.dumps(data)
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def relative_times(overrides: dict) -> dict:
    """Small iat/exp values are seconds from now (taken when the test runs), others absolute."""
    now = int(time.time())
    return {k: now + v if k in ("iat", "exp") and abs(v) < 1000 else v
            for k, v in overrides.items()}


def logs(db) -> list[LTILaunchLog]:
    db.session.expire_all()
    return db.session.scalars(sa.select(LTILaunchLog).order_by(LTILaunchLog.id)).all()


def signed_in_user(browser) -> str | None:
    with browser.session_transaction() as session:
        return session.get("_user_id")


def assert_refused(response, db, browser, category: str, status: int, token: str | None = None):
    assert response.status_code == status, response.data[:500]
    assert response.mimetype == "text/html"
    assert b"Traceback" not in response.data
    [entry] = [e for e in logs(db) if not e.success]
    assert entry.error_category == category, entry.error_message
    assert f"#{entry.id}".encode() in response.data, "the page gives the log reference"
    assert signed_in_user(browser) is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0
    if token:
        stored = json.dumps(entry.claims) + entry.error_message
        assert token not in stored and token.split(".")[2] not in stored
    return entry


# The certification suite's known-bad launches, through the normal OIDC flow.

@pytest.mark.parametrize(
    "overrides, category, status",
    [
        ({"version": "11.3"}, "invalid_claim", 400),
        ({"version": DROP}, "missing_claim", 400),
        ({"message_type": DROP, "version": DROP, "roles": DROP}, "missing_claim", 400),
        ({"exp": 22222, "iat": 11111}, "expired", 401),
        ({"message_type": DROP}, "missing_claim", 400),
        ({"roles": DROP}, "missing_claim", 400),
        ({"deployment_id": DROP}, "missing_claim", 400),
        ({"resource_link": DROP}, "missing_claim", 400),
        ({"sub": ""}, "missing_claim", 400),
        ({"sub": DROP}, "missing_claim", 400),
        ({"deployment_id": "999"}, "unknown_deployment", 403),
        ({"message_type": "LtiSubmissionReviewRequest"}, "unsupported_message", 400),
        ({"exp": -200}, "expired", 401),
        ({"iat": 300, "exp": 360}, "clock_skew", 401),
        ({"aud": ["Xq7Lm2Pz9Rt4Wv1", "someone-else"]}, "wrong_audience", 401),
        ({"aud": "Xq7Lm2Pz9Rt4Wv1", "azp": "someone-else"}, "unknown_platform", 403),
        ({"aud": "not-our-client"}, "unknown_platform", 403),
        ({"iss": "https://evil.example.com"}, "unknown_platform", 403),
    ],
    ids=[
        "wrong-version", "no-version", "missing-lti-claims", "timestamps-1970", "no-message-type",
        "no-roles", "no-deployment", "no-resource-link", "empty-sub", "no-sub",
        "unknown-deployment", "unknown-message-type", "expired", "issued-in-future",
        "untrusted-extra-audience", "wrong-azp", "wrong-aud", "wrong-iss",
    ],
)
def test_known_bad_launches_are_refused(browser, lms, db, overrides, category, status):
    overrides = relative_times(overrides)
    login = lms.login(browser)
    token = lms.sign(lms.claims(nonce=login.nonce, **overrides))
    response = lms.launch(browser, token=token, login=login)
    assert_refused(response, db, browser, category, status, token)


def test_clock_skew_names_the_measured_seconds(browser, lms, db):
    login = lms.login(browser)
    token = lms.sign(lms.claims(nonce=login.nonce, **relative_times({"iat": 300, "exp": 360})))
    entry = assert_refused(lms.launch(browser, token=token, login=login), db, browser,
                           "clock_skew", 401)
    seconds = int(entry.error_message.split("issued ")[1].split(" s")[0])
    assert 295 <= seconds <= 300


def test_missing_kid_is_refused_without_fetching_keys(browser, lms, db):
    login = lms.login(browser)
    token = lms.sign(lms.claims(nonce=login.nonce), headers={})
    assert "kid" not in jwt.get_unverified_header(token)
    before = lms.server.requests
    assert_refused(lms.launch(browser, token=token, login=login), db, browser, "missing_kid", 401)
    assert lms.server.requests == before


def test_unknown_kid_is_refused_after_one_refresh(browser, lms, db):
    login = lms.login(browser)
    token = lms.sign(lms.claims(nonce=login.nonce), headers={"kid": "no-such-key"})
    before = lms.server.requests
    assert_refused(lms.launch(browser, token=token, login=login), db, browser, "unknown_kid", 401)
    assert lms.server.requests == before + 1


def test_bad_signature_is_refused(browser, lms, db):
    login = lms.login(browser)
    token = lms.sign(lms.claims(nonce=login.nonce), key=rsa_key(2))  # other key, known kid
    assert_refused(lms.launch(browser, token=token, login=login), db, browser, "bad_signature", 401)


def test_edited_body_breaks_the_signature(browser, lms, db):
    login = lms.login(browser)
    header, _, signature = lms.sign(lms.claims(nonce=login.nonce)).split(".")
    forged = ".".join([header, b64(lms.claims(nonce=login.nonce, sub="1")), signature])
    assert_refused(lms.launch(browser, token=forged, login=login), db, browser,
                   "bad_signature", 401)


@pytest.mark.parametrize(
    "algorithm, key", [("HS256", "a-shared-secret-of-more-than-32-bytes"), ("none", None)]
)
def test_other_algorithms_are_refused(browser, lms, db, algorithm, key):
    login = lms.login(browser)
    token = jwt.encode(lms.claims(nonce=login.nonce), key, algorithm=algorithm,
                       headers={"kid": lms.kid})
    assert_refused(lms.launch(browser, token=token, login=login), db, browser,
                   "bad_algorithm", 401)


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b", "a.b.c", f"{b64({})}.{b64({'name': 'Not LTI'})}",
     f"{b64({})}.{b64({'name': 'Not LTI'})}.c2ln"],
    ids=["empty", "garbage", "two-parts", "undecodable", "invalid-lti-two-segments",
         "invalid-lti-message"],
)
def test_an_id_token_that_is_not_an_lti_jwt_is_refused(browser, lms, db, token):
    response = lms.launch(browser, token=token)
    assert_refused(response, db, browser, "malformed_token", 400)


def test_replayed_id_token_is_refused(browser, lms, db):
    login = lms.login(browser)
    token = lms.sign(lms.claims(nonce=login.nonce))
    assert lms.launch(browser, token=token, login=login).status_code == 200
    browser.get("/healthz")
    with browser.session_transaction() as session:
        session.clear()
    db.session.execute(sa.delete(User))  # only the replay's effects are checked below
    db.session.execute(sa.delete(LTILaunchLog))
    db.session.commit()
    response = lms.launch(browser, token=token, login=login)
    assert_refused(response, db, browser, "nonce_replay", 401, token)


def test_nonce_not_issued_for_this_login_is_refused(browser, lms, db):
    login = lms.login(browser)
    token = lms.sign(lms.claims(nonce="a-nonce-we-never-issued"))
    assert_refused(lms.launch(browser, token=token, login=login), db, browser,
                   "nonce_mismatch", 401)


def test_nonce_of_another_login_is_refused(browser, lms, db):
    first, second = lms.login(browser), lms.login(browser)
    token = lms.sign(lms.claims(nonce=first.nonce))
    response = browser.post("/lti/launch", data={"id_token": token, "state": second.state})
    assert_refused(response, db, browser, "nonce_mismatch", 401)


def test_missing_state_is_refused(browser, lms, db):
    login = lms.login(browser)
    token = lms.sign(lms.claims(nonce=login.nonce))
    response = browser.post("/lti/launch", data={"id_token": token})
    assert_refused(response, db, browser, "state_missing", 400)


def test_state_from_another_browser_is_refused(app, browser, lms, db):
    login = lms.login(browser)
    token = lms.sign(lms.claims(nonce=login.nonce))
    other_browser = type(browser)(app, app.response_class, use_cookies=True)
    response = other_browser.post("/lti/launch", data={"id_token": token, "state": login.state})
    assert_refused(response, db, other_browser, "state_missing", 400)
    assert b"new window" in response.data


def test_state_that_is_not_this_browsers_is_refused(browser, lms, db):
    login = lms.login(browser)
    token = lms.sign(lms.claims(nonce=login.nonce))
    response = browser.post("/lti/launch", data={"id_token": token, "state": "state-forged"})
    assert_refused(response, db, browser, "state_mismatch", 400)


def test_platform_error_post_gets_a_clear_page(browser, lms, db):
    login = lms.login(browser)
    response = browser.post(
        "/lti/launch",
        data={"error": "access_denied", "error_description": "Wrong user", "state": login.state},
    )
    entry = assert_refused(response, db, browser, "platform_error", 400)
    assert "access_denied" in entry.error_message


def test_deep_linking_refused_when_switched_off(browser, lms, db):
    lms.platform.enable_deep_linking = False
    db.session.commit()
    response = lms.launch(browser, message_type="LtiDeepLinkingRequest", roles=[INSTRUCTOR])
    entry = assert_refused(response, db, browser, "deep_linking_disabled", 403)
    assert entry.launch_type is LaunchType.DEEP_LINKING


def test_unknown_user_refused_when_user_creation_is_off(browser, lms, db):
    lms.platform.auto_create_users = False
    db.session.commit()
    entry = assert_refused(lms.launch(browser), db, browser, "user_creation_disabled", 403)
    assert entry.claims["sub"] == "318"


def test_inactive_platform_is_refused_at_login(browser, lms, db):
    lms.platform.active = False
    db.session.commit()
    login = lms.login(browser)
    assert_refused(login.response, db, browser, "platform_inactive", 403)


def test_unregistered_issuer_login_is_a_4xx_page_and_an_application_log(browser, lms, db, caplog):
    login = lms.login(browser, iss="https://unknown-lms.example.com")
    assert login.response.status_code == 403
    assert b"not set up for the media tool" in login.response.data
    assert logs(db) == []
    assert "unknown_platform" in caplog.text


def test_unknown_deployment_is_refused_at_login(browser, lms, db):
    login = lms.login(browser, lti_deployment_id="77")
    entry = assert_refused(login.response, db, browser, "unknown_deployment", 403)
    assert "77" in entry.error_message


def test_login_without_issuer_is_a_clear_400(browser, lms, db):
    response = browser.post("/lti/login", data={"login_hint": "318"})
    assert response.status_code == 400
    assert b"Traceback" not in response.data


# What the certification requires a tool to accept.

@pytest.mark.parametrize(
    "overrides",
    [
        {"roles": []},
        {"roles": [""]},
        {"roles": ["Instructor"]},
        {"roles": ["http://purl.imsglobal.org/vocab/lis/v2/unknown/unknown#Helper"]},
        {"context": DROP},
        {"name": DROP, "given_name": DROP, "family_name": DROP, "email": DROP, "ext": DROP},
        {"aud": ["Xq7Lm2Pz9Rt4Wv1"]},
        {"iat": 1},
        {"iat": 45, "exp": 105},
        {"exp": -30},
        {"context": {"id": "24", "title": "T", "type": ["CourseSection"]}, "lis": DROP},
        {"unknown_claim": {"x": 1}},
    ],
    ids=["roles-empty", "roles-empty-string", "short-role", "unknown-role", "no-context",
         "no-personal-data", "aud-list", "iat-1s-ahead", "iat-45s-ahead", "exp-30s-ago",
         "short-context-type", "extra-claim"],
)
def test_valid_launches_are_accepted(browser, lms, db, overrides):
    response = lms.launch(browser, **relative_times(overrides))
    assert response.status_code == 200, response.data[:800]
    [entry] = logs(db)
    assert entry.success and entry.error_category is None
    assert signed_in_user(browser) == str(entry.user_id)


def test_deep_linking_request_without_target_link_or_resource_link_is_accepted(
    browser, lms, db
):
    response = lms.launch(
        browser, message_type="LtiDeepLinkingRequest", roles=[INSTRUCTOR],
        target_link_uri=DROP, resource_link=DROP,
    )
    assert response.status_code == 200
    assert "/media/picker/" in response.headers["Content-Location"]
    [entry] = logs(db)
    assert entry.success and entry.launch_type is LaunchType.DEEP_LINKING


def test_claim_names_are_read_as_full_uris(lms):
    """Guard for the test platform itself: overrides land on the real LTI claim names."""
    body = lms.claims(roles=["x"], sub="9")
    assert body[LTI + "roles"] == ["x"] and body["sub"] == "9"
