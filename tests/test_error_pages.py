"""The error pages people meet: the launch doctor's refusals (at the login and the launch step)
and the HTTP error pages, in plain words, with a way back and a way to try again."""

import html
import json
import re

import pytest
import sqlalchemy as sa

from lti_tool.models import Category
from lti_tool.services import doctor

from .lms import INSTRUCTOR

JARGON = ("deployment", "kid", "nonce", "id_token", "token", "jwks", "lti", "oidc", "claim",
          "issuer", "launch", "audience", "azp", "pylti")


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z_0-9]+", text.lower()))


def hidden_inputs(page: str) -> dict[str, str]:
    return {html.unescape(name): html.unescape(value) for name, value in re.findall(
        r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page)}


def try_again_form(page: str) -> dict[str, str]:
    match = re.search(r'<form method="post" action="(/lti/login)">(.*?)</form>', page, re.S)
    assert match, "no Try again form"
    assert "Try again" in match.group(2)
    return hidden_inputs(match.group(2))


@pytest.mark.parametrize("category", sorted(doctor.CATEGORIES))
def test_titles_and_learner_texts_have_no_jargon(category):
    diagnosis = doctor.CATEGORIES[category]
    assert not words(diagnosis.title) & set(JARGON), diagnosis.title
    assert not words(diagnosis.learner) & set(JARGON), diagnosis.learner
    assert diagnosis.title[0].isupper() and not diagnosis.title.endswith(".")
    assert category not in diagnosis.title


def test_the_status_codes_stay():
    assert doctor.CATEGORIES["unknown_deployment"].status == 403
    assert doctor.CATEGORIES["unknown_platform"].status == 403
    assert doctor.CATEGORIES["state_missing"].status == 400
    assert doctor.CATEGORIES["jwks_unavailable"].status == 502


def test_an_unknown_deployment_at_login_shows_the_fix_and_a_try_again_form(browser, lms):
    login = lms.login(browser, lti_deployment_id="77")
    page = login.response.get_data(as_text=True)
    assert login.response.status_code == 403
    assert "This course&#39;s LMS is not set up for the media tool yet" in page
    assert "For teachers and LMS administrators" in page
    assert "How to fix this (for the LMS administrator)" in page
    assert "Deployment ID 77 is not allowed for platform &#39;Test Moodle&#39;" in page
    assert "<dd>77</dd>" in page and "<dd>Test Moodle</dd>" in page
    sent = try_again_form(page)
    assert sent["iss"] == lms.issuer and sent["login_hint"] == "318"
    assert sent["client_id"] == lms.client_id and sent["lti_deployment_id"] == "77"
    assert set(sent) == set(lms.login_params())
    assert json.loads(sent["lti_message_hint"])["cmid"] == 57
    assert "(unknown_deployment)" in page, "the category stays in the reference line"
    assert "Back to the course" not in page, "a login knows no return URL"


def test_try_again_after_the_admin_adds_the_deployment_goes_on(browser, lms, db):
    page = lms.login(browser, lti_deployment_id="77").response.get_data(as_text=True)
    lms.platform.deployment_ids = ["5", "77"]
    db.session.commit()
    again = browser.post("/lti/login", data=try_again_form(page))
    assert again.status_code == 200 and b"lti1p3_new_window" in again.data


def test_an_unknown_platform_at_login_names_the_issuer_and_client_id(browser, lms):
    login = lms.login(browser, iss="https://other-lms.example.com")
    page = login.response.get_data(as_text=True)
    assert login.response.status_code == 403
    assert "This LMS is not set up for the media tool yet" in page
    assert "issuer https://other-lms.example.com and client ID " + lms.client_id in page
    assert try_again_form(page)["iss"] == "https://other-lms.example.com"


def test_a_switched_off_platform_at_login(browser, lms, db):
    lms.platform.active = False
    db.session.commit()
    page = lms.login(browser).response.get_data(as_text=True)
    assert "The media tool is switched off for this LMS" in page
    assert "activate it in the tool&#39;s admin" in page and "Try again" in page


def test_a_launch_refusal_with_a_return_url_leads_back_to_the_course(browser, lms):
    response = lms.launch(browser, deployment_id="99")  # the login named deployment 5
    page = response.get_data(as_text=True)
    assert response.status_code == 403
    back = re.search(r'<a class="button[^"]*" href="([^"]+)"\s+target="_top">Back to the course',
                     page)
    assert back and html.unescape(back.group(1)) == (
        f"{lms.issuer}/mod/lti/return.php?course=24&sesskey=Ab12Cd34Ef")
    assert "How to fix it" not in page, "a learner gets no fix"
    assert "Try again" not in page, "a new launch cannot get past a setup problem"


def test_a_teacher_refused_at_the_launch_step_sees_the_fix(browser, lms):
    page = lms.launch(browser, deployment_id="99", roles=[INSTRUCTOR]).get_data(as_text=True)
    assert "How to fix it" in page and "Deployment ID 99" in page


def test_a_transient_moodle_refusal_reopens_the_activity(browser, lms):
    login = lms.login(browser)
    token = lms.sign(lms.claims(nonce="not-the-login-nonce"))
    response = lms.launch(browser, login=login, token=token)
    page = response.get_data(as_text=True)
    assert response.status_code == 401
    assert "(nonce_mismatch)" in page
    link = re.search(r'<a class="button" href="([^"]+)" target="_top">Try again</a>', page)
    assert link and link.group(1) == f"{lms.issuer}/mod/lti/view.php?id=57"
    assert "Back to the course" in page
    assert "state=" not in page and login.state not in page and token not in page


def test_a_transient_refusal_elsewhere_runs_the_login_again(browser, lms):
    login = lms.login(browser, lti_message_hint="opaque-hint")
    token = lms.sign(lms.claims(nonce="wrong", tool_platform={"product_family_code": "canvas"}))
    page = lms.launch(browser, login=login, token=token).get_data(as_text=True)
    sent = try_again_form(page)
    assert sent["lti_message_hint"] == "opaque-hint" and sent["login_hint"] == "318"
    assert "state" not in sent and "id_token" not in sent


def test_a_moodle_refusal_without_its_activity_offers_no_try_again(browser, lms):
    login = lms.login(browser, lti_message_hint=json.dumps({"launchid": "x"}))
    token = lms.sign(lms.claims(nonce="wrong"))
    page = lms.launch(browser, login=login, token=token).get_data(as_text=True)
    assert "(nonce_mismatch)" in page and "Try again" not in page
    assert "Back to the course" in page


def test_a_lasting_refusal_at_the_launch_step_offers_no_try_again(browser, lms, db):
    login = lms.login(browser)
    token = lms.sign(lms.claims(nonce=login.nonce, version="1.1"))
    page = lms.launch(browser, login=login, token=token).get_data(as_text=True)
    assert "(invalid_claim)" in page and "Try again" not in page


# HTTP error pages


def test_a_404_in_the_lms_uses_the_frame_layout_and_leads_back(browser, lms, db):
    lms.launch(browser)
    course = db.session.scalar(sa.select(Category).where(Category.lti_context_id == "24"))
    response = browser.get("/media/987654")
    page = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "This page does not exist" in page and "Error 404" in page
    assert "site-header" not in page and 'class="in-frame"' in page
    assert f'href="/media/category/{course.id}"' in page and "Back to course media" in page
    assert "frame-ancestors 'none'" not in response.headers["Content-Security-Policy"]


def test_an_unknown_address_after_a_launch_is_framed_too(browser, lms):
    lms.launch(browser)
    response = browser.get("/no/such/page")
    assert response.status_code == 404
    assert b"site-header" not in response.data and b"Back to course media" in response.data
    assert "frame-ancestors 'none'" not in response.headers["Content-Security-Policy"]


def test_a_refused_upload_says_mb_and_leads_back(browser, lms, db, app):
    from .test_media_manage import upload

    lms.launch(browser, roles=[INSTRUCTOR])
    app.config["MAX_CONTENT_LENGTH"] = 100 * 1024
    app.config["MAX_UPLOAD_BYTES"] = 2 * 1024 * 1024
    response = upload(browser, db, content=b"\0" * (150 * 1024))
    page = response.get_data(as_text=True)
    assert response.status_code == 413
    assert "The file is too large" in page and "limit of 2 MB" in page
    assert "site-header" not in page and "Back to course media" in page


def test_an_admin_404_keeps_the_full_layout(admin):
    response = admin.get("/admin/platforms/987654")
    page = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "site-header" in page and "This page does not exist" in page
    assert "Sign out" in page, "the staff header stays"


def test_a_stranger_gets_the_plain_full_layout(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert b"site-header" in response.data and b"Back to course media" not in response.data


def test_a_view_s_own_description_is_kept(browser, lms):
    lms.launch(browser)
    response = browser.get("/media/upload")
    assert response.status_code == 403
    assert b"You cannot open this page" in response.data
    assert b"Media can be added by a course" in response.data


def test_a_login_with_missing_parameters_offers_no_try_again(browser, lms):
    response = lms.login(browser, login_hint=None).response
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "(missing_claim)" in page
    assert "Try again" not in page


def test_an_oversized_login_keeps_no_parameters_for_try_again(browser, lms):
    login = lms.login(browser, lti_message_hint="x" * 5000)
    token = lms.sign(lms.claims(nonce="wrong", tool_platform={"product_family_code": "canvas"}))
    page = lms.launch(browser, login=login, token=token).get_data(as_text=True)
    assert "(nonce_mismatch)" in page and "Try again" not in page
