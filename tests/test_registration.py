"""LTI Dynamic Registration through /lti/register against Moodle- and Canvas-shaped test platforms:
what the tool sends, what it stores, who activates it, and every refusal as a page in the frame."""

import logging
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from lti_tool.models import LTIPlatform, RegisteredBy
from lti_tool.services.registration import (
    MAX_ATTEMPTS_PER_ADDRESS,
    MAX_PENDING,
    approve,
    is_trusted,
    issuer_matches,
    pending_registrations,
)

from . import registration_platform
from .conftest import csrf
from .registration_platform import DROP, NRPS_SCOPE, TOOL_CONFIGURATION, RegistrationPlatform

registration_lms = registration_platform.registration_lms  # the fixture


@pytest.fixture
def loopback(app):
    """The test platforms run on 127.0.0.1: as an LMS on the same machine would."""
    app.config["REGISTRATION_ALLOW_LOOPBACK"] = True
    return app


def register(client, lms: RegistrationPlatform, token="same", **query):
    params = {"openid_configuration": lms.config_url} | query
    token = lms.token if token == "same" else token
    if token is not None:
        params["registration_token"] = token
    return client.get("/lti/register", query_string=params)


def platforms(db) -> list[LTIPlatform]:
    return list(db.session.scalars(select(LTIPlatform).order_by(LTIPlatform.id)))


def text(response) -> str:
    return response.get_data(as_text=True)


# A full registration


def test_a_moodle_registers_the_tool_and_waits_for_approval(client, db, loopback,
                                                          registration_lms):
    lms = registration_lms
    response = register(client, lms)

    assert response.status_code == 200, text(response)
    assert "Registered: waiting for approval" in text(response)
    assert "js/registration_close.js" in text(response)
    # framed by the LMS's dialog, whichever host it is on
    assert "frame-ancestors *" in response.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in response.headers
    assert response.headers["Referrer-Policy"] == "no-referrer"  # the URL holds the token

    [platform] = platforms(db)
    assert platform.platform_id == lms.site
    assert platform.client_id == lms.client_id
    assert platform.deployment_ids == ["7"]
    assert platform.auth_login_url == f"{lms.site}/mod/lti/auth.php"
    assert platform.auth_token_url == f"{lms.site}/mod/lti/token.php"
    assert platform.key_set_url == f"{lms.site}/mod/lti/certs.php"
    assert platform.auth_audience is None
    assert platform.product_family_code == "moodle"
    assert platform.product_version == "4.5.2 (Build: 20250210)"
    assert platform.registered_by == RegisteredBy.DYNAMIC
    assert platform.registration_pending is True
    assert platform.active is False
    assert platform.name == f"Moodle {urlsplit(lms.site).netloc}/moodle"

    # what the tool asked for
    [sent] = lms.registrations
    assert sent["client_name"] == "Media tool"
    assert sent["application_type"] == "web"
    assert sent["initiate_login_uri"] == "http://localhost/lti/login"
    assert sent["redirect_uris"] == ["http://localhost/lti/launch"]
    assert sent["jwks_uri"] == "http://localhost/lti/jwks"
    assert sent["token_endpoint_auth_method"] == "private_key_jwt"
    assert sent["grant_types"] == ["implicit", "client_credentials"]
    assert sent["response_types"] == ["id_token"]
    assert sent["scope"] == NRPS_SCOPE
    tool = sent[TOOL_CONFIGURATION]
    assert tool["domain"] == urlsplit(tool["target_link_uri"]).netloc == "localhost"
    assert tool["target_link_uri"] == "http://localhost/lti/launch"
    assert {"iss", "sub", "name", "email"} <= set(tool["claims"])
    assert [m["type"] for m in tool["messages"]] == ["LtiResourceLinkRequest",
                                                     "LtiDeepLinkingRequest"]
    post = next(r for r in lms.received if r.method == "POST")
    assert post.headers["Content-Type"] == "application/json"


def test_the_token_goes_as_bearer_on_both_requests(client, loopback, registration_lms):
    register(client, registration_lms)
    get, post = registration_lms.received
    assert (get.method, post.method) == ("GET", "POST")
    assert get.headers["Authorization"] == post.headers["Authorization"] == "Bearer reg-token-123"


def test_without_a_token_no_authorization_is_sent(client, db, loopback, registration_lms):
    registration_lms.token = None  # Brightspace: the token is inside the configuration URL
    response = register(client, registration_lms, openid_configuration=(
        registration_lms.config_url + "?token=inside-the-url"))
    assert response.status_code == 200, text(response)
    assert all("Authorization" not in r.headers for r in registration_lms.received)
    assert len(platforms(db)) == 1


def test_a_canvas_registers_the_tool(client, db, loopback, registration_lms):
    lms = registration_lms
    lms.shape = "canvas"
    lms.client_id = "10000000000042"
    lms.deployment_id = "42:8865aa05b4b79b64a91a86042e43af5ea8ae79eb"

    response = register(client, lms)

    assert response.status_code == 200, text(response)
    [platform] = platforms(db)
    assert platform.platform_id == lms.base
    assert platform.client_id == "10000000000042"
    assert platform.deployment_ids == [lms.deployment_id]
    assert platform.auth_login_url == f"{lms.base}/api/lti/authorize_redirect"
    assert platform.auth_token_url == f"{lms.base}/login/oauth2/token"
    assert platform.key_set_url == f"{lms.base}/api/lti/security/jwks"
    assert platform.auth_audience == f"{lms.base}/login/oauth2/aud"
    assert platform.product_family_code == "canvas"
    assert platform.name.startswith("Canvas ")
    assert platform.active is False and platform.registration_pending is True


def test_canvas_without_the_token_refuses_the_configuration(client, db, loopback,
                                                           registration_lms):
    registration_lms.shape = "canvas"
    response = register(client, registration_lms, token=None)
    assert response.status_code == 502
    assert "error 401" in text(response)
    assert platforms(db) == []


def test_no_deployment_id_in_the_answer_leaves_the_list_empty(client, db, loopback,
                                                             registration_lms):
    registration_lms.shape = "canvas"
    registration_lms.deployment_id = None
    response = register(client, registration_lms)
    assert response.status_code == 200
    assert platforms(db)[0].deployment_ids == []
    assert "none yet" in text(response)


def test_the_nrps_scope_is_asked_only_where_offered(client, loopback, registration_lms):
    registration_lms.shape = "canvas"
    registration_lms.config_overrides = {"scopes_supported": ["openid"]}
    register(client, registration_lms)
    assert "scope" not in registration_lms.registrations[0]


def test_urls_come_from_the_public_address(browser, loopback, registration_lms):
    response = register(browser, registration_lms)  # https://tool.example.org
    assert response.status_code == 200, text(response)
    [sent] = registration_lms.registrations
    assert sent["initiate_login_uri"] == "https://tool.example.org/lti/login"
    assert sent[TOOL_CONFIGURATION]["domain"] == "tool.example.org"


def test_two_registrations_of_one_site_get_two_names(client, db, loopback, registration_lms):
    register(client, registration_lms)
    registration_lms.token_used = False
    registration_lms.client_id = "another-client"
    assert register(client, registration_lms).status_code == 200
    first, second = platforms(db)
    assert second.name == f"{first.name} (2)"


# Who activates it


@pytest.mark.parametrize("trusted", [["127.0.0.1"], ["lms.example.edu", "{issuer}"]])
def test_a_trusted_issuer_is_active_at_once(client, db, loopback, registration_lms, trusted):
    loopback.config["REGISTRATION_TRUSTED_ISSUERS"] = [
        t.format(issuer=registration_lms.issuer) for t in trusted]
    response = register(client, registration_lms)
    assert response.status_code == 200
    assert "registered and ready" in text(response)
    [platform] = platforms(db)
    assert platform.active is True and platform.registration_pending is False


@pytest.mark.parametrize("trusted", [["lms.example.edu"], ["http://127.0.0.1"], ["127.0.0"]])
def test_other_trusted_issuers_do_not_activate_it(client, db, loopback, registration_lms,
                                                  trusted):
    loopback.config["REGISTRATION_TRUSTED_ISSUERS"] = trusted
    register(client, registration_lms)
    assert platforms(db)[0].active is False


@pytest.mark.parametrize("issuer, listed, expected", [
    ("https://lms.example.edu/moodle", ["lms.example.edu"], True),
    ("https://lms.example.edu/moodle", ["LMS.example.edu"], True),
    ("https://lms.example.edu/moodle", ["https://lms.example.edu/moodle/"], True),
    ("https://lms.example.edu/moodle", ["https://lms.example.edu"], False),
    ("https://lms.example.edu.evil.com", ["lms.example.edu"], False),
    ("https://evil.com/lms.example.edu", ["lms.example.edu"], False),
    ("https://lms.example.edu", [], False),
])
def test_is_trusted(issuer, listed, expected):
    assert is_trusted(issuer, listed) is expected


# Overwriting


def test_an_active_platform_is_never_overwritten(client, db, loopback, registration_lms,
                                                 make_platform):
    lms = registration_lms
    existing = make_platform(site=lms.site, client_id=lms.client_id, name="Our Moodle")
    before = (existing.auth_login_url, existing.key_set_url, existing.deployment_ids)

    response = register(client, lms)

    assert response.status_code == 409
    assert "left unchanged" in text(response)
    db.session.refresh(existing)
    assert (existing.auth_login_url, existing.key_set_url, existing.deployment_ids) == before
    assert existing.registered_by == RegisteredBy.ADMIN and existing.active is True
    assert len(platforms(db)) == 1


def test_a_platform_an_admin_switched_off_is_not_overwritten(client, db, loopback,
                                                             registration_lms, make_platform):
    make_platform(site=registration_lms.site, client_id=registration_lms.client_id,
                  active=False)
    assert register(client, registration_lms).status_code == 409


def test_a_pending_registration_may_be_registered_again(client, db, loopback, registration_lms):
    register(client, registration_lms)
    [first] = platforms(db)
    registration_lms.token_used = False  # the LMS gave a new token
    registration_lms.deployment_id = "8"

    response = register(client, registration_lms)

    assert response.status_code == 200, text(response)
    [platform] = platforms(db)
    assert platform.id == first.id and platform.name == first.name
    assert platform.deployment_ids == ["7", "8"]
    assert platform.registration_pending is True


# Refusals


def test_switched_off_the_endpoint_answers_404(client, db, loopback, registration_lms):
    loopback.config["REGISTRATION_ENABLED"] = False
    response = register(client, registration_lms)
    assert response.status_code == 404
    assert "Registration is switched off" in text(response)
    assert registration_lms.received == []
    assert platforms(db) == []


@pytest.mark.parametrize("query", [{}, {"openid_configuration": ""},
                                   {"openid_configuration": "   "}])
def test_a_missing_configuration_address_is_refused(client, db, query):
    response = client.get("/lti/register", query_string=query)
    assert response.status_code == 400
    assert "no openid_configuration address" in text(response)
    assert "Close and return to the LMS" in text(response)


@pytest.mark.parametrize("address", ["not a url", "ftp://lms.example.edu/config",
                                     "https://user:pw@lms.example.edu/config", "/relative"])
def test_a_bad_configuration_address_is_refused(client, db, address):
    response = client.get("/lti/register", query_string={"openid_configuration": address})
    assert response.status_code == 400
    assert "will not contact" in text(response)


def test_loopback_is_refused_unless_allowed(client, db, registration_lms):
    response = register(client, registration_lms)
    assert response.status_code == 400
    assert "private, loopback or reserved address" in text(response)
    assert registration_lms.received == []


@pytest.mark.parametrize("issuer", [
    "https://lms.example.edu",
    "http://localhost:{port}/moodle",
    "http://127.0.0.1:1/moodle",
    "{base}/mood",
    "{base}/moodle/mod/lti/elsewhere",
    "{base}/moodle?x=1",
])
def test_an_issuer_from_another_site_is_refused(client, db, loopback, registration_lms,
                                                issuer):
    lms = registration_lms
    lms.config_overrides = {"issuer": issuer.format(
        base=lms.base, port=urlsplit(lms.base).port)}
    response = register(client, lms)
    assert response.status_code == 400, text(response)
    assert "only registers a platform whose configuration comes from its own site" in text(
        response)
    assert lms.registrations == []
    assert platforms(db) == []


@pytest.mark.parametrize("issuer, url, expected", [
    ("https://lms.edu", "https://lms.edu/api/config", True),
    ("https://lms.edu/", "https://lms.edu/api/config", True),
    ("https://lms.edu/moodle", "https://lms.edu/moodle/mod/lti/openid-configuration.php", True),
    ("https://LMS.edu", "https://lms.edu/config", True),
    ("https://lms.edu", "https://lms.edu.evil.com/config", False),
    ("https://lms.edu", "https://lms.edu:8443/config", False),
    ("http://lms.edu", "https://lms.edu/config", False),
    ("https://lms.edu/moodle", "https://lms.edu/moodle2/config", False),
    ("https://lms.edu/moodle", "https://lms.edu/config", False),
    ("https://lms.edu#x", "https://lms.edu/config", False),
])
def test_issuer_matches(issuer, url, expected):
    assert issuer_matches(issuer, url) is expected


@pytest.mark.parametrize("overrides, says", [
    ({"issuer": DROP}, "names no issuer"),
    ({"issuer": 42}, "names no issuer"),
    ({"authorization_endpoint": DROP}, "has no authorization_endpoint"),
    ({"token_endpoint": ""}, "has no token_endpoint"),
    ({"jwks_uri": DROP}, "has no jwks_uri"),
    ({"registration_endpoint": DROP}, "has no registration_endpoint"),
    ({"jwks_uri": "not a url"}, "jwks_uri in the platform&#39;s configuration is not an https"),
    ({"token_endpoint": "ftp://lms.example.edu/token"}, "not an https URL"),
    ({"authorization_server": ["x"]}, "has no authorization_server"),
    ({"id_token_signing_alg_values_supported": ["HS256"]}, "RS256"),
    ({"https://purl.imsglobal.org/spec/lti-platform-configuration": "moodle"},
     "is not an object"),
])
def test_a_malformed_configuration_is_refused(client, db, loopback, registration_lms,
                                              overrides, says):
    registration_lms.config_overrides = overrides
    response = register(client, registration_lms)
    assert response.status_code == 502, text(response)
    assert says in text(response)
    assert registration_lms.registrations == []
    assert platforms(db) == []


@pytest.mark.parametrize("body, says", [
    (b"<html>Moodle error</html>", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
])
def test_a_configuration_that_is_not_an_object_is_refused(client, db, loopback,
                                                          registration_lms, body, says):
    registration_lms.config_body = body
    response = register(client, registration_lms)
    assert response.status_code == 502
    assert says in text(response)


@pytest.mark.parametrize("overrides, says", [
    ({"client_id": DROP}, "has no client ID"),
    ({"client_id": ""}, "has no client ID"),
    ({"client_id": {"id": 1}}, "has no client ID"),
    ({"client_id": "x" * 300}, "has no client ID"),
    ({"deployment_id": ["1"]}, "unusable deployment ID"),
])
def test_a_malformed_answer_is_refused(client, db, loopback, registration_lms, overrides, says):
    registration_lms.shape = "canvas"
    registration_lms.answer_overrides = overrides
    response = register(client, registration_lms)
    assert response.status_code == 502, text(response)
    assert says in text(response)
    assert platforms(db) == []


def test_a_used_token_shows_what_the_platform_said(client, db, loopback, registration_lms):
    assert register(client, registration_lms).status_code == 200
    again = register(client, registration_lms)  # a reload of the dialog
    assert again.status_code == 502
    assert "token_already_used" in text(again)
    assert "Registration links can be used once only" in text(again)
    assert len(platforms(db)) == 1


def test_a_refused_registration_shows_the_platform_error(client, db, loopback,
                                                         registration_lms):
    registration_lms.answer_status = 400
    response = register(client, registration_lms)
    assert response.status_code == 502
    assert "registration refused" in text(response)
    assert "Traceback" not in text(response)


def test_attempts_are_logged_without_the_token(client, db, loopback, registration_lms, caplog):
    caplog.set_level(logging.INFO, logger="lti_tool.services.registration")
    register(client, registration_lms)
    register(client, registration_lms)  # refused: the token was used
    register(client, registration_lms, openid_configuration=(
        registration_lms.config_url + "?token=secret-in-url"))
    messages = [r.getMessage() for r in caplog.records]
    assert any(registration_lms.issuer in m and "waiting for approval" in m for m in messages)
    assert any("refused" in m and "fetch_status" in m for m in messages)
    assert not any("reg-token-123" in m or "secret-in-url" in m for m in messages)


# Flooding


def test_one_address_may_start_only_so_many_registrations(client, db):
    for _ in range(MAX_ATTEMPTS_PER_ADDRESS):
        assert client.get("/lti/register").status_code == 400
    response = client.get("/lti/register")
    assert response.status_code == 429
    assert "Too many registrations from your address" in text(response)


def test_waiting_registrations_are_capped(client, db, loopback, registration_lms,
                                          make_platform):
    for n in range(MAX_PENDING):
        make_platform(active=False, registration_pending=True,
                      registered_by=RegisteredBy.DYNAMIC, client_id=f"pending-{n}")
    response = register(client, registration_lms)
    assert response.status_code == 503
    assert f"{MAX_PENDING} registrations are already waiting" in text(response)
    assert registration_lms.registrations == []  # the LMS was not asked

    loopback.config["REGISTRATION_TRUSTED_ISSUERS"] = ["127.0.0.1"]
    assert register(client, registration_lms).status_code == 200


def test_an_approved_registration_is_active_and_no_longer_waiting(client, db, loopback,
                                                                  registration_lms):
    register(client, registration_lms)
    [platform] = pending_registrations()
    approve(platform)
    db.session.commit()
    assert platform.active is True and platform.registration_pending is False
    assert pending_registrations() == []
    registration_lms.token_used = False
    assert register(client, registration_lms).status_code == 409  # now in use


@pytest.mark.parametrize("token", ["abc\r\nX-Injected: 1", "has space", "a" * 5000, "é"])
def test_a_malformed_token_is_refused_before_any_request(client, db, loopback,
                                                         registration_lms, token):
    response = register(client, registration_lms, token=token)
    assert response.status_code == 400
    assert "registration_token is not valid" in text(response)
    assert registration_lms.received == []


# Settings


def test_settings_come_from_the_environment(tmp_path):
    from lti_tool.config import from_env

    defaults = from_env(str(tmp_path), {})
    assert defaults["REGISTRATION_ENABLED"] is True
    assert defaults["REGISTRATION_TRUSTED_ISSUERS"] == []
    assert defaults["REGISTRATION_ALLOW_LOOPBACK"] is False
    config = from_env(str(tmp_path), {
        "REGISTRATION_ENABLED": "0",
        "REGISTRATION_TRUSTED_ISSUERS": " lms.example.edu  https://moodle.example.org/moodle ",
        "REGISTRATION_ALLOW_LOOPBACK": "1",
    })
    assert config["REGISTRATION_ENABLED"] is False
    assert config["REGISTRATION_TRUSTED_ISSUERS"] == [
        "lms.example.edu", "https://moodle.example.org/moodle"]
    assert config["REGISTRATION_ALLOW_LOOPBACK"] is True


def test_an_unclear_switch_is_a_configuration_error(tmp_path):
    from lti_tool.config import ConfigError, from_env

    with pytest.raises(ConfigError, match="REGISTRATION_ENABLED must be 1 or 0"):
        from_env(str(tmp_path), {"REGISTRATION_ENABLED": "maybe"})


def test_switching_on_a_waiting_registration_in_the_admin_approves_it(admin, db, loopback,
                                                                      registration_lms):
    register(admin, registration_lms)
    [platform] = pending_registrations()
    page = admin.get(f"/admin/platforms/{platform.id}")
    admin.post(f"/admin/platforms/{platform.id}/active",
               data={"csrf_token": csrf(page), "active": "1"})
    db.session.refresh(platform)
    assert platform.active is True and platform.registration_pending is False
