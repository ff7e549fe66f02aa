"""Access tokens from the platform (client credentials with a signed assertion) and service GETs."""

import logging
import threading

import jwt
import pytest
import requests

from lti_tool.extensions import db as _db
from lti_tool.models import LTIPlatform
from lti_tool.services import platform_tokens as pt
from lti_tool.services.platform_tokens import NRPS_SCOPE, ServiceError

from . import nrps_platform
from .nrps_platform import MEMBERSHIPS_TYPE, member, members

nrps_lms = nrps_platform.nrps_lms  # the fixture

SCOPES = (NRPS_SCOPE,)


def decode(nrps, assertion: str, audience: str) -> tuple[dict, dict]:
    header = jwt.get_unverified_header(assertion)
    jwk = next(k for k in nrps.tool_jwks["keys"] if k["kid"] == header["kid"])
    return header, jwt.decode(assertion, jwt.PyJWK(jwk).key, algorithms=["RS256"],
                              audience=audience)


def test_assertion_is_signed_by_the_tools_current_key_for_the_token_url(nrps_lms, lms):
    assertion = pt.client_assertion(lms.platform)
    header, claims = decode(nrps_lms, assertion, nrps_lms.token_url)
    assert header["kid"] == nrps_lms.tool_jwks["keys"][0]["kid"]
    assert header["alg"] == "RS256"
    assert claims["iss"] == claims["sub"] == lms.client_id
    assert claims["aud"] == nrps_lms.token_url
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert claims["https://purl.imsglobal.org/spec/lti/claim/deployment_id"] == "5"
    assert claims["jti"] != decode(nrps_lms, pt.client_assertion(lms.platform),
                                   nrps_lms.token_url)[1]["jti"]


def test_assertion_audience_is_the_platforms_audience_when_set(nrps_lms, lms, db):
    lms.platform.auth_audience = "https://lms.example.edu/oauth2"
    lms.platform.deployment_ids = ["5", "6"]
    db.session.commit()
    _, claims = decode(nrps_lms, pt.client_assertion(lms.platform),
                       "https://lms.example.edu/oauth2")
    assert claims["aud"] == "https://lms.example.edu/oauth2"
    # with several deployments the tool cannot tell which one is meant
    assert "https://purl.imsglobal.org/spec/lti/claim/deployment_id" not in claims
    nrps_lms.audience = "https://lms.example.edu/oauth2"
    assert pt.access_token(lms.platform, SCOPES)


def test_token_is_fetched_once_and_reused(nrps_lms, lms):
    first = pt.access_token(lms.platform, SCOPES)
    assert pt.access_token(lms.platform, SCOPES) == first
    assert nrps_lms.token_requests == 1
    assert nrps_lms.assertions[0]["sub"] == lms.client_id


def test_token_near_its_expiry_is_fetched_again(nrps_lms, lms, monkeypatch):
    nrps_lms.token_lifetime = 3600
    first = pt.access_token(lms.platform, SCOPES)
    now = pt.clock()
    # kept until 10 % of its hour (6 minutes) before it runs out
    margin = max(pt.MIN_MARGIN, 3600 * pt.MARGIN_SHARE)
    monkeypatch.setattr(pt, "clock", lambda: now + 3600 - margin - 1)
    assert pt.access_token(lms.platform, SCOPES) == first
    monkeypatch.setattr(pt, "clock", lambda: now + 3600 - margin + 1)
    assert pt.access_token(lms.platform, SCOPES) != first
    assert nrps_lms.token_requests == 2


def test_short_lived_token_is_still_reused_for_half_its_life(nrps_lms, lms, monkeypatch):
    nrps_lms.token_lifetime = 60
    first = pt.access_token(lms.platform, SCOPES)
    now = pt.clock()
    monkeypatch.setattr(pt, "clock", lambda: now + 29)
    assert pt.access_token(lms.platform, SCOPES) == first
    monkeypatch.setattr(pt, "clock", lambda: now + 31)
    assert pt.access_token(lms.platform, SCOPES) != first


def test_tokens_are_per_registration(nrps_lms, lms, db):
    first = pt.access_token(lms.platform, SCOPES)
    lms.platform.client_id = nrps_lms.client_id = "New-Client-2"
    db.session.commit()
    second = pt.access_token(lms.platform, SCOPES)
    assert second != first
    assert nrps_lms.assertions[-1]["sub"] == "New-Client-2"


def test_concurrent_callers_share_one_token_request(nrps_lms, lms, app):
    nrps_lms.token_delay = 0.3  # the first caller is still fetching when the others ask
    barrier = threading.Barrier(4)
    tokens = []

    def ask():
        with app.app_context():
            platform = _db.session.get(LTIPlatform, lms.platform.id)
            barrier.wait(timeout=30)
            tokens.append(pt.access_token(platform, SCOPES))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(tokens) == 4 and len(set(tokens)) == 1
    assert nrps_lms.token_requests == 1


def test_service_get_sends_the_token_and_exactly_the_accept_header(nrps_lms, lms):
    nrps_lms.set_roster([member("318"), member("27", "Instructor")])
    response = pt.service_get(lms.platform, nrps_lms.memberships_url(), SCOPES, MEMBERSHIPS_TYPE)
    assert response.status_code == 200
    assert [m["user_id"] for m in response.json()["members"]] == ["318", "27"]
    sent = nrps_lms.memberships_requests()[0].headers
    assert sent["Accept"] == MEMBERSHIPS_TYPE
    assert sent["Authorization"].startswith("Bearer ")


def test_a_refused_token_is_replaced_once_and_the_request_retried(nrps_lms, lms):
    nrps_lms.set_roster(members(3))
    pt.service_get(lms.platform, nrps_lms.memberships_url(), SCOPES, MEMBERSHIPS_TYPE)
    nrps_lms.revoke_tokens()
    response = pt.service_get(lms.platform, nrps_lms.memberships_url(), SCOPES,
                              MEMBERSHIPS_TYPE)
    assert len(response.json()["members"]) == 3
    assert nrps_lms.token_requests == 2
    assert [r.status for r in nrps_lms.memberships_requests()] == [200, 401, 200]


def test_a_second_401_is_a_refusal_naming_the_setting(nrps_lms, lms):
    # the platform issues tokens but its service refuses them all
    nrps_lms.page_failures = {1: 401}
    with pytest.raises(ServiceError) as caught:
        pt.service_get(lms.platform, nrps_lms.memberships_url(), SCOPES, MEMBERSHIPS_TYPE)
    assert caught.value.status == 401
    assert not caught.value.transient
    assert "IMS LTI Names and Role Provisioning" in caught.value.reason
    assert nrps_lms.token_requests == 2
    assert len(nrps_lms.memberships_requests()) == 2


@pytest.mark.parametrize("failure, status, words", [
    ("invalid_scope", 400, "IMS LTI Names and Role Provisioning"),
    ("invalid_scope", 400, "developer key"),
    ("invalid_scope", 400, "Names and Role Provisioning Services"),
    ("invalid_client", 400, "current public keyset"),
    (401, 401, "OAuth 2 audience"),
    (403, 403, "IMS LTI Names and Role Provisioning"),
])
def test_token_refusals_name_what_to_fix_and_are_not_retried(nrps_lms, lms, failure, status,
                                                              words):
    nrps_lms.token_failure = failure
    with pytest.raises(ServiceError) as caught:
        pt.service_get(lms.platform, nrps_lms.memberships_url(), SCOPES, MEMBERSHIPS_TYPE)
    assert caught.value.status == status
    assert not caught.value.transient
    assert words in caught.value.reason
    assert nrps_lms.token_requests == 1
    assert nrps_lms.memberships_requests() == []


def test_a_scope_the_platform_does_not_permit_is_invalid_scope(nrps_lms, lms):
    nrps_lms.allowed_scopes = set()
    with pytest.raises(ServiceError) as caught:
        pt.access_token(lms.platform, SCOPES)
    assert "Use this service to retrieve members' information" in caught.value.reason


def test_keys_the_platform_has_not_read_are_an_invalid_client(nrps_lms, lms, db):
    from lti_tool.services import keys

    keys.rotate_key()
    db.session.commit()
    with pytest.raises(ServiceError) as caught:
        pt.access_token(lms.platform, SCOPES)
    assert "/lti/jwks" in caught.value.reason
    nrps_lms.read_tool_keys()
    assert pt.access_token(lms.platform, SCOPES)


def test_token_url_outage_is_transient(nrps_lms, lms):
    nrps_lms.token_failure = 503
    with pytest.raises(ServiceError) as caught:
        pt.access_token(lms.platform, SCOPES)
    assert caught.value.transient and caught.value.status == 503


def test_unreachable_token_url_is_transient(nrps_lms, lms, db):
    lms.platform.auth_token_url = "http://127.0.0.1:9/token"
    db.session.commit()
    with pytest.raises(ServiceError) as caught:
        pt.access_token(lms.platform, SCOPES)
    assert caught.value.transient and caught.value.status is None


@pytest.mark.parametrize("status, transient, words", [
    (500, True, "try again later"),
    (502, True, "try again later"),
    (429, True, "try again later"),
    (403, False, "Names and Role Provisioning"),
    (404, False, "the course is gone"),
    (400, False, "HTTP 400"),
])
def test_service_errors(nrps_lms, lms, status, transient, words):
    nrps_lms.set_roster(members(2))
    nrps_lms.page_failures = {1: status}
    with pytest.raises(ServiceError) as caught:
        pt.service_get(lms.platform, nrps_lms.memberships_url(), SCOPES, MEMBERSHIPS_TYPE)
    assert caught.value.status == status
    assert caught.value.transient is transient
    assert words in caught.value.reason
    assert len(nrps_lms.memberships_requests()) == 1


def test_wrong_accept_header_is_refused_by_the_platform(nrps_lms, lms):
    with pytest.raises(ServiceError) as caught:
        pt.service_get(lms.platform, nrps_lms.memberships_url(), SCOPES, "application/json")
    assert caught.value.status == 400


def test_unknown_course_is_not_found(nrps_lms, lms):
    with pytest.raises(ServiceError) as caught:
        pt.service_get(lms.platform, nrps_lms.memberships_url("999"), SCOPES, MEMBERSHIPS_TYPE)
    assert caught.value.status == 404 and not caught.value.transient


def test_slow_service_is_a_transient_timeout(nrps_lms, lms):
    nrps_lms.page_failures = {1: "slow"}
    with pytest.raises(ServiceError) as caught:
        pt.service_get(lms.platform, nrps_lms.memberships_url(), SCOPES, MEMBERSHIPS_TYPE,
                       timeout=(2, 0.5))
    assert caught.value.transient
    assert "did not answer in time" in caught.value.reason


def test_too_large_body_is_refused(nrps_lms, lms):
    nrps_lms.set_roster(members(50))
    with pytest.raises(ServiceError) as caught:
        pt.service_get(lms.platform, nrps_lms.memberships_url(), SCOPES, MEMBERSHIPS_TYPE,
                       max_bytes=1024)
    assert "1 KiB" in caught.value.reason
    assert not caught.value.transient


def test_tokens_and_assertions_never_reach_the_logs(nrps_lms, lms, caplog):
    caplog.set_level(logging.DEBUG)
    nrps_lms.set_roster(members(2))
    pt.service_get(lms.platform, nrps_lms.memberships_url(), SCOPES, MEMBERSHIPS_TYPE)
    nrps_lms.revoke_tokens()
    pt.service_get(lms.platform, nrps_lms.memberships_url(), SCOPES, MEMBERSHIPS_TYPE)
    nrps_lms.token_failure = "invalid_client"
    pt.forget_token(lms.platform, SCOPES)
    with pytest.raises(ServiceError):
        pt.access_token(lms.platform, SCOPES)
    secrets = [h["Authorization"].removeprefix("Bearer ") for h in
               (r.headers for r in nrps_lms.memberships_requests())]
    assert len(set(secrets)) == 2
    assert "access token" in caplog.text
    for secret in secrets:
        assert secret not in caplog.text
    assert "eyJ" not in caplog.text  # no JWT (assertion) either


def test_next_links_keep_their_mixed_case_page_tokens(nrps_lms, lms):
    nrps_lms.set_roster(members(5))
    url, seen = nrps_lms.memberships_url(limit=2), []
    while url:
        response = pt.service_get(lms.platform, url, SCOPES, MEMBERSHIPS_TYPE)
        seen += [m["user_id"] for m in response.json()["members"]]
        url = response.links.get("next", {}).get("url")
    assert seen == ["1", "2", "3", "4", "5"]
    pages = [r.query.get("page") for r in nrps_lms.memberships_requests()]
    assert pages[0] is None and all(p != p.lower() for p in pages[1:])


def test_a_lowercased_page_token_is_refused(nrps_lms, lms):
    nrps_lms.set_roster(members(3))
    first = pt.service_get(lms.platform, nrps_lms.memberships_url(limit=2), SCOPES,
                           MEMBERSHIPS_TYPE)
    with pytest.raises(ServiceError) as caught:
        pt.service_get(lms.platform, first.links["next"]["url"].lower(), SCOPES,
                       MEMBERSHIPS_TYPE)
    assert caught.value.status == 400


def test_service_redirects_are_not_followed(nrps_lms, lms):
    nrps_lms.page_failures = {1: 302}
    with pytest.raises(ServiceError) as caught:
        pt.service_get(lms.platform, nrps_lms.memberships_url(), SCOPES, MEMBERSHIPS_TYPE)
    assert caught.value.status == 302 and not caught.value.transient
    assert len(nrps_lms.memberships_requests()) == 1


def test_the_platform_refuses_a_replayed_assertion(nrps_lms, lms):
    assertion = pt.client_assertion(lms.platform)
    form = {"grant_type": "client_credentials", "client_assertion_type": pt.ASSERTION_TYPE,
            "client_assertion": assertion, "scope": NRPS_SCOPE}
    first = requests.post(nrps_lms.token_url, data=form, timeout=10)
    again = requests.post(nrps_lms.token_url, data=form, timeout=10)
    assert first.status_code == 200 and first.json()["scope"] == NRPS_SCOPE
    assert again.status_code == 400 and again.json()["error"] == "invalid_client"


def test_the_platform_filters_by_role_across_pages(nrps_lms, lms):
    nrps_lms.set_roster([member("1", "Instructor"), *members(3, start=2),
                         member("9", "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor")])
    url, seen = nrps_lms.memberships_url(role="Instructor", limit=1), []
    while url:
        response = pt.service_get(lms.platform, url, SCOPES, MEMBERSHIPS_TYPE)
        seen += [m["user_id"] for m in response.json()["members"]]
        url = response.links.get("next", {}).get("url")
    assert seen == ["1", "9"]


def test_a_token_url_that_is_no_web_address_is_not_retried(nrps_lms, lms, db):
    lms.platform.auth_token_url = "lms.example.edu/mod/lti/token.php"
    db.session.commit()
    with pytest.raises(ServiceError) as caught:
        pt.access_token(lms.platform, SCOPES)
    assert not caught.value.transient
    assert "check it in the platform's settings" in caught.value.reason
