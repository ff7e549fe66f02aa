"""Platform Storage (lti-cs-oidc): state and nonce kept by the LMS's page, not in a cookie."""

import json
import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from lti_tool.extensions import cache
from lti_tool.services.oidc import LOGIN_KEY

from .lms import INSTRUCTOR
from .test_launch_validation import assert_refused, logs, signed_in_user

TARGET = "post_message_forwarding"


def attr(page, name: str) -> str:
    match = re.search(rf'{name}=(["\'])(.*?)\1', page.get_data(as_text=True), re.S)
    assert match, f"no {name} in the page"
    return unescape(match.group(2))


def storage_login(client, lms, target=TARGET):
    """The login as Canvas sends it; returns the page and the state and nonce it stores."""
    page = client.post("/lti/login", data=lms.login_params(lti_storage_target=target))
    assert page.status_code == 200, page.data[:500]
    query = parse_qs(urlsplit(attr(page, "data-next")).query)
    return page, query["state"][0], query["nonce"][0]


def new_browser(app):
    from .conftest import HttpsClient

    return HttpsClient(app, app.response_class, use_cookies=True)


def read_back(browser, lms, state, nonce, target=TARGET, **claims):
    """The launch POST without the state cookie: the page that reads the state back."""
    token = lms.sign(lms.claims(nonce=nonce, **claims))
    page = browser.post("/lti/launch", data={"id_token": token, "state": state,
                                             "lti_storage_target": target})
    return token, page


def cookieless_launch(app, browser, lms, **claims):
    """A whole Platform Storage launch in a browser that keeps none of the tool's cookies: the
    login, the read-back page, and the launch it posts again (its response)."""
    _, state, nonce = storage_login(browser, lms)
    elsewhere = new_browser(app)
    _, page = read_back(elsewhere, lms, state, nonce, **claims)
    done = elsewhere.post("/lti/launch", data=fields(page) | {"lti_storage_state": state})
    assert done.status_code == 200, done.data[:500]
    return done


def fields(page) -> dict[str, str]:
    html = page.get_data(as_text=True)
    return {name: unescape(value) for name, value in
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html)}


def test_the_login_answers_the_storage_page_and_sets_no_state_cookie(browser, lms):
    page, state, nonce = storage_login(browser, lms)
    assert attr(page, "data-platform-storage") == "put"
    assert attr(page, "data-target") == TARGET
    assert attr(page, "data-origin") == "https://lms.example.edu"
    assert json.loads(attr(page, "data-entries")) == [[f"state_{state}", state],
                                                      [f"nonce_{nonce}", nonce]]
    assert attr(page, "data-next").startswith("https://lms.example.edu/mod/lti/auth.php?")
    # The state cookie is offered (the cookie path where the browser keeps it), not needed.
    assert [c for c in page.headers.getlist("Set-Cookie") if c.startswith(f"lti1p3-{state}=")]
    assert "<script>" not in page.get_data(as_text=True), "no inline script"
    assert "frame-ancestors https://lms.example.edu" in page.headers["Content-Security-Policy"]
    # The way out when the LMS does not answer: the cookie login, in a window of its own.
    link = attr(page, "href(?=[^>]*target=\"_blank\")")
    query = parse_qs(urlsplit(link).query)
    assert query["lti1p3_new_window"] == ["1"] and "lti_storage_target" not in query
    assert cache.get(LOGIN_KEY + state)["storage"] is True


def test_a_frame_name_that_needs_quoting_is_not_used(browser, lms):
    page = browser.post("/lti/login", data=lms.login_params(lti_storage_target="a\"><b"))
    assert b"lti1p3_new_window" in page.data and b"data-platform-storage" not in page.data


def test_a_launch_without_cookie_is_accepted_with_the_state_read_back(app, browser, lms, db):
    _, state, nonce = storage_login(browser, lms)
    elsewhere = new_browser(app)  # the LMS frame keeps none of the tool's cookies
    token, page = read_back(elsewhere, lms, state, nonce)
    assert page.status_code == 200
    assert attr(page, "data-platform-storage") == "get"
    assert json.loads(attr(page, "data-entries"))[0] == [f"state_{state}", state]
    sent = fields(page)
    assert sent["id_token"] == token and sent["state"] == state and sent["lti_storage_proof"]
    assert signed_in_user(elsewhere) is None, "not signed in before the read-back"
    done = elsewhere.post("/lti/launch", data=sent | {"lti_storage_state": state})
    # The landing page itself, not a redirect a cookie-less browser could not follow.
    assert done.status_code == 200, [(e.error_category, e.error_message) for e in logs(db)]
    assert b"Modern History" in done.data
    assert done.headers["Content-Security-Policy"].endswith(
        "frame-ancestors 'self' https://lms.example.edu")
    assert signed_in_user(elsewhere) is None, "no session kept for later pages"
    # Pages after this one need the tool's cookies: the way to a window of its own.
    notice = re.search(r'<p class="flash flash-storage"[^>]*>(.*?)</p>',
                       done.get_data(as_text=True), re.S)
    assert "Open the media tool in a new window" in notice.group(1)
    link = parse_qs(urlsplit(unescape(re.search(r'href="([^"]+)"', notice.group(1))[1])).query)
    assert link["lti1p3_new_window"] == ["1"] and link["iss"] == [lms.issuer]


def test_a_deep_linking_launch_lands_on_the_picker(app, browser, lms, db):
    done = cookieless_launch(app, browser, lms, message_type="LtiDeepLinkingRequest",
                             roles=[INSTRUCTOR])
    assert b"Cancel" in done.data and b'value="cancel"' in done.data


@pytest.mark.parametrize("change", ["wrong_state", "no_proof_value", "forged_proof"])
def test_a_continuation_without_the_right_proof_is_refused(app, browser, lms, db, change):
    _, state, nonce = storage_login(browser, lms)
    elsewhere = new_browser(app)
    _, page = read_back(elsewhere, lms, state, nonce)
    sent = fields(page) | {"lti_storage_state": state}
    if change == "wrong_state":
        sent["lti_storage_state"] = state + "x"
    elif change == "no_proof_value":
        del sent["lti_storage_state"]
    else:
        sent["lti_storage_proof"] = "made-up"
    response = elsewhere.post("/lti/launch", data=sent)
    assert_refused(response, db, elsewhere, "state_missing", 400)


def test_a_replayed_proof_is_refused(app, browser, lms, db):
    _, state, nonce = storage_login(browser, lms)
    elsewhere = new_browser(app)
    _, page = read_back(elsewhere, lms, state, nonce)
    sent = fields(page) | {"lti_storage_state": state}
    assert elsewhere.post("/lti/launch", data=sent).status_code == 200
    again = new_browser(app)
    response = again.post("/lti/launch", data=sent)
    assert response.status_code in (400, 401)
    assert signed_in_user(again) is None


def test_a_proof_for_another_login_is_refused(app, browser, lms, db):
    _, first_state, first_nonce = storage_login(browser, lms)
    _, state, nonce = storage_login(browser, lms)
    elsewhere = new_browser(app)
    _, first_page = read_back(elsewhere, lms, first_state, first_nonce)
    token, _ = read_back(elsewhere, lms, state, nonce)
    sent = {"id_token": token, "state": state, "lti_storage_target": TARGET,
            "lti_storage_proof": fields(first_page)["lti_storage_proof"],
            "lti_storage_state": state}
    response = elsewhere.post("/lti/launch", data=sent)
    assert_refused(response, db, elsewhere, "state_missing", 400)


def test_a_cookie_login_without_its_cookie_is_still_refused(app, browser, lms, db):
    login = lms.login(browser)  # no lti_storage_target: the cookie path (Moodle)
    assert cache.get(LOGIN_KEY + login.state)["storage"] is False
    elsewhere = new_browser(app)
    token = lms.sign(lms.claims(nonce=login.nonce))
    # Even claiming platform storage and bringing a proof of its own making.
    response = elsewhere.post("/lti/launch", data={
        "id_token": token, "state": login.state, "lti_storage_target": TARGET,
        "lti_storage_proof": "x", "lti_storage_state": login.state,
    })
    assert_refused(response, db, elsewhere, "state_missing", 400)
    assert b"new window" in response.data


def test_where_the_cookie_is_kept_a_storage_login_takes_the_cookie_path(browser, lms):
    """Canvas sends lti_storage_target to every browser: one that keeps the tool's cookies gets
    the usual landing and session, no read-back page."""
    _, state, nonce = storage_login(browser, lms)
    token = lms.sign(lms.claims(nonce=nonce))
    done = browser.post("/lti/launch", data={"id_token": token, "state": state,
                                             "lti_storage_target": TARGET})
    assert done.status_code == 200 and b"data-platform-storage" not in done.data
    assert b"Modern History" in done.data
    assert signed_in_user(browser) is not None


def test_the_new_window_link_takes_the_cookie_path(browser, lms):
    page, state, _ = storage_login(browser, lms)
    link = attr(page, "href(?=[^>]*target=\"_blank\")")
    second = browser.get(link)
    assert second.status_code == 302
    assert second.headers["Location"].startswith("https://lms.example.edu/mod/lti/auth.php?")


def test_a_page_asked_inside_the_frame_without_any_cookie_says_why(app):
    page = new_browser(app).get("/media/", headers={"Sec-Fetch-Dest": "iframe"})
    assert page.status_code == 401
    assert b"blocks the media tool&#39;s cookies inside the LMS page" in page.data
    plain = new_browser(app).get("/media/")
    assert b"Please open the media tool again from your course." in plain.data


def test_a_launch_that_does_not_repeat_the_target_uses_the_logins(app, browser, lms):
    _, state, nonce = storage_login(browser, lms, target="_parent")
    token = lms.sign(lms.claims(nonce=nonce))
    page = new_browser(app).post("/lti/launch", data={"id_token": token, "state": state})
    assert attr(page, "data-platform-storage") == "get"
    assert attr(page, "data-target") == "_parent"


def test_only_the_latest_read_back_page_proof_counts(app, browser, lms, db):
    _, state, nonce = storage_login(browser, lms)
    elsewhere = new_browser(app)
    _, first = read_back(elsewhere, lms, state, nonce)
    _, second = read_back(elsewhere, lms, state, nonce)
    stale = elsewhere.post("/lti/launch", data=fields(first) | {"lti_storage_state": state})
    assert stale.status_code == 400
    fresh = new_browser(app).post("/lti/launch", data=fields(second) | {"lti_storage_state": state})
    assert fresh.status_code == 200 and b"Modern History" in fresh.data
