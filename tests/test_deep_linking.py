"""Deep linking: the instructor's picker and the signed answer a platform accepts."""

import html
import re

import jwt
import pytest
import sqlalchemy as sa

from lti_tool.models import Category, LaunchType, LTILaunchLog, Media, User, Visibility

from .conftest import csrf
from .lms import DL_SETTINGS, DROP, INSTRUCTOR, LEARNER

DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"
LTI = "https://purl.imsglobal.org/spec/lti/claim/"
REFERER = {"Referer": "https://tool.example.org/media/picker"}


def settings(lms, **changes) -> dict:
    base = lms.claims(message_type="LtiDeepLinkingRequest")[DL_SETTINGS]
    return {k: v for k, v in (base | changes).items() if v is not DROP}


def open_picker(browser, lms, roles=(INSTRUCTOR,), **overrides):
    response = lms.launch(browser, message_type="LtiDeepLinkingRequest", roles=list(roles),
                          **overrides)
    assert response.status_code == 200, response.data[:400]
    return response.headers["Content-Location"], response  # the picker, in the launch's response


def answer(page) -> tuple[str, str]:
    """The auto-submitted form's action and JWT."""
    action = re.search(rb'<form id="deep-link-return" method="post" action="([^"]+)"', page.data)
    token = re.search(rb'name="JWT" value="([^"]+)"', page.data)
    return html.unescape(action.group(1).decode()), token.group(1).decode()


def verify_as_the_platform(browser, lms, token: str) -> dict:
    """Check the response exactly as a platform does: our JWKS, kid, iss, aud, times."""
    header = jwt.get_unverified_header(token)
    jwks = jwt.PyJWKSet.from_dict(browser.get("/lti/jwks").json)
    key = jwks[header["kid"]]
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=lms.issuer,
                      issuer=lms.client_id, options={"require": ["exp", "iat", "nonce"]})


@pytest.fixture
def library(db, make_user):
    """Media of every kind of reach, created before the instructor's first launch."""
    other = make_user("other-teacher")
    items = {
        "public": Media(title="Public lecture", description="Open to all", file_path="p.mp4",
                        mime_type="video/mp4", size=1, owner=other,
                        visibility=Visibility.PUBLIC),
        "private": Media(title="Someone's draft", file_path="d.mp4", mime_type="video/mp4",
                         size=1, owner=other, visibility=Visibility.PRIVATE),
        "elsewhere": Media(title="Other course", file_path="o.mp4", mime_type="video/mp4",
                           size=1, owner=other, visibility=Visibility.MEMBERS,
                           category=Category(title="Another course")),
    }
    db.session.add_all(items.values())
    db.session.commit()
    return items


def test_instructor_lands_on_the_picker_with_the_media_they_may_use(browser, lms, db, library):
    _, page = open_picker(browser, lms)
    assert page.status_code == 200
    assert b"Public lecture" in page.data
    assert b"Someone&#39;s draft" not in page.data and b"Other course" not in page.data
    assert b'type="checkbox"' in page.data, "accept_multiple is true"


def test_a_learner_is_refused_the_picker(browser, lms, db):
    response = lms.launch(browser, message_type="LtiDeepLinkingRequest", roles=[LEARNER])
    assert response.status_code == 403
    assert b"Only teachers can choose media" in response.data
    entry = db.session.scalar(sa.select(LTILaunchLog))
    assert (entry.success, entry.error_category, entry.launch_type) == (
        False, "role_not_allowed", LaunchType.DEEP_LINKING)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_course_media_and_own_media_are_offered_and_filterable(browser, lms, db, library):
    url, _ = open_picker(browser, lms)
    me = db.session.scalar(sa.select(User).where(User.username == "ghopper"))
    course = db.session.scalar(sa.select(Category).where(Category.lti_context_id == "24"))
    db.session.add_all([
        Media(title="Course video", file_path="c.mp4", mime_type="video/mp4", size=1,
              category=course, visibility=Visibility.MEMBERS),
        Media(title="My notes", description="photosynthesis", file_path="n.pdf",
              mime_type="application/pdf", size=1, owner=me, visibility=Visibility.PRIVATE),
    ])
    db.session.commit()
    everything = browser.get(url).data
    assert b"Course video" in everything and b"My notes" in everything
    assert b"Public lecture" in everything
    assert b"Course video" in browser.get(url + "?scope=course").data
    assert b"Public lecture" not in browser.get(url + "?scope=course").data
    own = browser.get(url + "?scope=own").data
    assert b"My notes" in own and b"Course video" not in own
    assert b"Public lecture" in browser.get(url + "?scope=public").data
    found = browser.get(url + "?q=PHOTOSYNTHESIS").data
    assert b"My notes" in found and b"Public lecture" not in found
    assert b"No media matches" in browser.get(url + "?q=nothing-like-this").data


def test_the_picker_pages(browser, lms, db, make_user):
    owner = make_user("owner")
    db.session.add_all([Media(title=f"Item {n:02d}", file_path=f"{n}.mp4", mime_type="video/mp4",
                              size=1, owner=owner, visibility=Visibility.PUBLIC)
                        for n in range(25)])
    db.session.commit()
    url, first = open_picker(browser, lms)
    assert first.data.count(b'name="media_ids"') == 20
    assert [f"Item {n:02d}" for n in range(24, 4, -1)] == re.findall(
        r"Choose<span class=\"visually-hidden\"> “(Item \d\d)”", first.get_data(as_text=True))
    next_url = html.unescape(re.search(r'href="([^"]+)" rel="next"',
                                       first.get_data(as_text=True)).group(1))
    second = browser.get(next_url)
    assert re.findall(r"> “(Item \d\d)”", second.get_data(as_text=True)) == [
        f"Item {n:02d}" for n in range(4, -1, -1)]
    assert b'rel="next"' not in second.data and b"First page" in second.data


def test_choices_on_other_pages_are_kept_and_answered_together(browser, lms, db, make_user):
    owner = make_user("owner")
    items = [Media(title=f"Item {n:02d}", file_path=f"{n}.mp4", mime_type="video/mp4", size=1,
                   owner=owner, visibility=Visibility.PUBLIC) for n in range(25)]
    db.session.add_all(items)
    db.session.commit()
    url, first = open_picker(browser, lms)
    newest, oldest = items[24], items[0]  # on the first page; on the second
    next_url = html.unescape(re.search(r'href="([^"]+)" rel="next"',
                                       first.get_data(as_text=True)).group(1))
    # picker.js sends what is chosen with the link: here the newest item
    second = browser.get(f"{next_url}&keep={newest.id}")
    text = second.get_data(as_text=True)
    assert "1 chosen" in text
    assert f'<input type="hidden" name="kept_ids" value="{newest.id}">' in text
    back = html.unescape(re.search(r'<a href="([^"]+)">First page</a>', text).group(1))
    assert f"keep={newest.id}" in back, "the way back keeps it too"
    assert re.search(rf'value="{newest.id}"[^>]*checked', browser.get(back).get_data(
        as_text=True)), "ticked again on its own page"
    response = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(second), "action": "add", "media_ids": [str(oldest.id)],
        "kept_ids": [str(newest.id)]})
    claims = verify_as_the_platform(browser, lms, answer(response)[1])
    assert [i["custom"]["media_id"] for i in claims[DL + "content_items"]] == [
        str(oldest.id), str(newest.id)]


def test_a_kept_choice_is_checked_again_when_answering(browser, lms, db, library):
    url, page = open_picker(browser, lms)
    response = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(page), "action": "add", "kept_ids": [str(library["private"].id)]})
    assert response.status_code == 400 and b"JWT" not in response.data


def test_where_one_item_is_taken_a_choice_here_replaces_a_kept_one(browser, lms, db, library):
    url, page = open_picker(browser, lms, **{DL_SETTINGS: settings(lms, accept_multiple=False)})
    public, elsewhere_kept = library["public"], library["elsewhere"]
    kept_only = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(page), "action": "add", "kept_ids": [str(public.id)]})
    [item] = verify_as_the_platform(browser, lms, answer(kept_only)[1])[DL + "content_items"]
    assert item["custom"]["media_id"] == str(public.id)
    url, page = open_picker(browser, lms, **{DL_SETTINGS: settings(lms, accept_multiple=False)})
    both = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(page), "action": "add", "media_ids": [str(public.id)],
        "kept_ids": [str(elsewhere_kept.id)]})
    [item] = verify_as_the_platform(browser, lms, answer(both)[1])[DL + "content_items"]
    assert item["custom"]["media_id"] == str(public.id)


def test_choosing_media_answers_with_a_signed_response_the_platform_accepts(
    browser, lms, db, library
):
    url, page = open_picker(browser, lms)
    public = library["public"]
    response = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(page), "media_ids": [str(public.id)], "action": "add"})
    assert response.status_code == 200
    action, token = answer(response)
    assert action == settings(lms)["deep_link_return_url"], "exactly as given, sesskey kept"
    claims = verify_as_the_platform(browser, lms, token)
    assert claims[LTI + "message_type"] == "LtiDeepLinkingResponse"
    assert claims[LTI + "version"] == "1.3.0"
    assert claims[LTI + "deployment_id"] == lms.deployment_id
    assert DL + "data" not in claims, "no data in the request, none echoed"
    [item] = claims[DL + "content_items"]
    thumbnail = item.pop("thumbnail")["url"]
    assert thumbnail.startswith(f"https://tool.example.org/media/{public.id}/thumbnail?token=")
    assert item == {
        "type": "ltiResourceLink",
        "title": "Public lecture",
        "text": "Open to all",
        "url": "https://tool.example.org/lti/launch",
        "custom": {"media_id": str(public.id)},
        "iframe": {"width": 960, "height": 540},
        "window": {"targetName": f"media-{public.id}", "width": 1024, "height": 640},
    }
    assert claims["iat"] < __import__("time").time(), "back-dated for zero-leeway platforms"
    # The LMS shows the preview without a session in the tool: the URL carries a token.
    lms_side = type(browser)(browser.application, browser.application.response_class)
    assert lms_side.get(thumbnail).status_code in (200, 302)
    assert lms_side.get(thumbnail.replace("token=", "token=x")).status_code == 401


def test_data_is_echoed_and_targets_respected(browser, lms, db, library):
    dl = settings(lms, data="opaque-123", accept_multiple=False,
                  accept_presentation_document_targets=["window"])
    url, page = open_picker(browser, lms, **{DL_SETTINGS: dl})
    assert b'type="radio"' in page.data
    response = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(page), "media_ids": [str(library["public"].id)], "action": "add"})
    claims = verify_as_the_platform(browser, lms, answer(response)[1])
    assert claims[DL + "data"] == "opaque-123"
    [item] = claims[DL + "content_items"]
    assert "window" in item and "iframe" not in item


def test_one_item_only_when_the_platform_takes_one(browser, lms, db, library, make_user):
    extra = Media(title="Another", file_path="a.mp4", mime_type="video/mp4", size=1,
                  owner=make_user(), visibility=Visibility.PUBLIC)
    db.session.add(extra)
    db.session.commit()
    url, page = open_picker(browser, lms, **{DL_SETTINGS: settings(lms, accept_multiple=False)})
    response = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(page), "action": "add",
        "media_ids": [str(library["public"].id), str(extra.id)]})
    assert response.status_code == 400 and b"one item at a time" in response.data


@pytest.mark.parametrize("which", ["private", "elsewhere", "missing"])
def test_media_the_instructor_may_not_use_is_refused(browser, lms, db, library, which):
    url, page = open_picker(browser, lms)
    media_id = 987654 if which == "missing" else library[which].id
    response = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(page), "media_ids": [str(media_id)], "action": "add"})
    assert response.status_code == 400 and b"may not use media" in response.data
    assert b'name="JWT"' not in response.data


def test_cancel_returns_an_empty_list(browser, lms, db, library):
    url, page = open_picker(browser, lms)
    response = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(page), "action": "cancel"})
    claims = verify_as_the_platform(browser, lms, answer(response)[1])
    assert claims[DL + "content_items"] == []


def test_the_picker_post_needs_its_csrf_token(browser, lms, db, library):
    url, _ = open_picker(browser, lms)
    response = browser.post(url, headers=REFERER, data={
        "media_ids": [str(library["public"].id)], "action": "add"})
    assert response.status_code == 400
    assert b'name="JWT"' not in response.data


def test_the_picker_a_launch_answers_with_posts_to_itself(browser, lms, db):
    url, page = open_picker(browser, lms)
    assert url.startswith("/media/picker/")
    forms = re.findall(r'<form method="(get|post)" action="([^"]+)"', page.get_data(as_text=True))
    assert ("get", url) in forms and ("post", url) in forms, forms


def test_a_picker_of_another_launch_is_refused(browser, lms, db):
    open_picker(browser, lms)
    assert browser.get("/media/picker/lti1p3-launch-not-mine").status_code == 403


def test_a_picked_item_later_launches_into_its_player(browser, lms, db, library):
    public = library["public"]
    response = lms.launch(browser, roles=[LEARNER], custom={"media_id": str(public.id)})
    assert response.headers["Content-Location"].endswith(f"/media/{public.id}")


@pytest.mark.parametrize(
    "q, found",
    [
        ("photo", {"Photosynthesis explained"}),
        ("LIGHT react", {"Photosynthesis explained"}),
        ("cell", {"Cell biology", "Photosynthesis explained"}),
        ("cell dark", {"Photosynthesis explained"}),
        ("biology dark", set()),
        ('"*) OR title:x NEAR(', set()),
        ("ünïcode", {"Ünïcode lecture"}),
    ],
    ids=["prefix", "words-anywhere", "title-or-description", "all-words", "no-item-has-all",
         "syntax-is-text", "unicode"],
)
def test_search_matches_word_starts_in_title_and_description(browser, lms, db, make_user, q,
                                                             found):
    owner = make_user("owner")
    for title, text in [("Photosynthesis explained", "Light and dark reactions in cells"),
                        ("Cell biology", ""), ("Ünïcode lecture", "")]:
        db.session.add(Media(title=title, description=text, file_path=title, size=1,
                             mime_type="video/mp4", owner=owner, visibility=Visibility.PUBLIC))
    db.session.commit()
    url, _ = open_picker(browser, lms)
    page = browser.get(url, query_string={"q": q}).get_data(as_text=True)
    shown = {t for t in ("Photosynthesis explained", "Cell biology", "Ünïcode lecture")
             if t in page}
    assert shown == found


def test_search_follows_edits_and_deletes(browser, lms, db, make_user):
    item = Media(title="Old name", file_path="x", size=1, mime_type="video/mp4",
                 owner=make_user("owner"), visibility=Visibility.PUBLIC)
    db.session.add(item)
    db.session.commit()
    url, _ = open_picker(browser, lms)
    item.title = "Renamed mitochondria"
    db.session.commit()
    assert "Renamed" in browser.get(url + "?q=mitochondria").get_data(as_text=True)
    assert "Renamed" not in browser.get(url + "?q=old").get_data(as_text=True)
    db.session.delete(item)
    db.session.commit()
    assert "No media matches" in browser.get(url + "?q=mitochondria").get_data(as_text=True)


def test_a_request_without_context_or_data_opens_the_picker(browser, lms, db, library):
    url, page = open_picker(browser, lms, context=DROP, target_link_uri=DROP)
    assert page.status_code == 200 and b"Public lecture" in page.data
    assert b"No media matches" in browser.get(url + "?scope=course").data


def test_a_platform_that_takes_no_links_is_told_and_may_cancel(browser, lms, db, library):
    url, page = open_picker(browser, lms, **{DL_SETTINGS: settings(lms, accept_types=["file"])})
    assert b"does not accept links" in page.data
    assert b'value="add"' not in page.data
    forced = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(page), "media_ids": [str(library["public"].id)], "action": "add"})
    assert forced.status_code == 400 and b'name="JWT"' not in forced.data
    response = browser.post(url, headers=REFERER, data={"csrf_token": csrf(page),
                                                        "action": "cancel"})
    assert verify_as_the_platform(browser, lms, answer(response)[1])[DL + "content_items"] == []


def test_a_return_url_off_the_platform_is_refused(browser, lms, db, library):
    evil = settings(lms, deep_link_return_url="https://evil.example.com/collect")
    url, page = open_picker(browser, lms, **{DL_SETTINGS: evil})
    response = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(page), "media_ids": [str(library["public"].id)], "action": "add"})
    assert response.status_code == 400 and b"not on the platform" in response.data
    assert b'name="JWT"' not in response.data
