"""Issue 10, media side: preview URLs, sandboxed user files, the picker without a usable key,
paged course pages, colleagues' media, and NUL bytes in upload names."""

import html
import io
import re
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from itsdangerous import URLSafeSerializer
from PIL import Image

from lti_tool.models import Category, LTILaunchLog, Media, ToolKey, User, Visibility
from lti_tool.services import access
from lti_tool.services.media import (
    PREVIEW_URL_DAYS,
    PREVIEW_WIDTH,
    display_filename,
    preview_token,
)

from .conftest import HttpsClient
from .lms import DROP, INSTRUCTOR, LEARNER
from .test_deep_linking import REFERER, answer, csrf, open_picker, verify_as_the_platform
from .test_media import SAMPLES, fetch
from .test_media_manage import course, upload

DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"
DAY = 24 * 3600


def png(width: int = 1200, height: int = 800) -> bytes:
    """A real PNG, larger than any preview."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, "PNG")
    return out.getvalue()


def new_browser(app):
    return HttpsClient(app, app.response_class, use_cookies=True)


def lms_side(app):
    """The LMS fetching a preview URL: no session in the tool."""
    return new_browser(app)


def uploaded_image(browser, lms, db, visibility="members") -> Media:
    lms.launch(browser, roles=[INSTRUCTOR])
    assert upload(browser, db, content=png(), filename="slide.png",
                  visibility=visibility).status_code == 303
    return db.session.scalar(sa.select(Media).order_by(Media.id.desc()))


def picked_preview_url(browser, lms, item: Media) -> str:
    """The preview URL the deep-linking answer gives the LMS for `item`."""
    url, page = open_picker(browser, lms)
    response = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(page), "media_ids": [str(item.id)], "action": "add"})
    [content] = verify_as_the_platform(browser, lms, answer(response)[1])[DL + "content_items"]
    return content["thumbnail"]["url"]


# 1. Preview URLs


def test_an_image_preview_is_a_downscaled_jpeg_never_the_file(app, browser, lms, db):
    item = uploaded_image(browser, lms, db)
    original = png()
    with browser.get(f"/media/{item.id}/thumbnail") as response:
        assert response.status_code == 200 and response.mimetype == "image/jpeg"
        data = response.get_data()
    assert data != original
    preview = Image.open(io.BytesIO(data))
    assert preview.format == "JPEG" and max(preview.size) == PREVIEW_WIDTH
    assert preview.size == (PREVIEW_WIDTH, PREVIEW_WIDTH * 800 // 1200)


def test_the_preview_url_given_to_the_lms_serves_the_preview(app, browser, lms, db):
    item = uploaded_image(browser, lms, db)
    url = picked_preview_url(browser, lms, item)
    with lms_side(app).get(url) as response:
        assert response.status_code == 200 and response.mimetype == "image/jpeg"
        assert Image.open(io.BytesIO(response.get_data())).size[0] == PREVIEW_WIDTH


@pytest.mark.parametrize("change", ["private", "public", "another course"])
def test_a_preview_url_stops_working_when_the_item_is_made_private_or_changes_reach(
        app, browser, lms, db, change):
    item = uploaded_image(browser, lms, db)
    url = picked_preview_url(browser, lms, item)
    stored = db.session.get(Media, item.id)
    if change == "another course":
        stored.category = Category(title="Another course")
    else:
        stored.visibility = Visibility(change)
    db.session.commit()
    assert fetch(lms_side(app), url).status_code == 401


def test_a_preview_url_stops_working_when_the_item_is_deleted(app, browser, lms, db):
    item = uploaded_image(browser, lms, db)
    url = picked_preview_url(browser, lms, item)
    confirm = browser.get(f"/media/{item.id}/delete")
    browser.post(f"/media/{item.id}/delete", headers=REFERER, data={"csrf_token": csrf(confirm)})
    assert fetch(lms_side(app), url).status_code == 404


@pytest.mark.parametrize("age_days, status", [(PREVIEW_URL_DAYS - 1, 200),
                                              (PREVIEW_URL_DAYS + 1, 401)])
def test_a_preview_url_expires(app, browser, lms, db, age_days, status):
    item = uploaded_image(browser, lms, db)
    token = preview_token(db.session.get(Media, item.id), app.config["SECRET_KEY"],
                          now=time.time() - age_days * DAY)
    assert fetch(lms_side(app), f"/media/{item.id}/thumbnail?token={token}").status_code == status


def test_an_old_never_expiring_preview_token_no_longer_works(app, browser, lms, db):
    item = uploaded_image(browser, lms, db, visibility="public")
    old = URLSafeSerializer(app.config["SECRET_KEY"], salt="media-thumbnail").dumps(item.id)
    assert fetch(lms_side(app), f"/media/{item.id}/thumbnail?token={old}").status_code == 401


def test_a_private_item_gets_no_preview_url(browser, lms, db):
    item = uploaded_image(browser, lms, db, visibility="private")
    url, page = open_picker(browser, lms)
    response = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(page), "media_ids": [str(item.id)], "action": "add"})
    [content] = verify_as_the_platform(browser, lms, answer(response)[1])[DL + "content_items"]
    assert "thumbnail" not in content
    token = preview_token(db.session.get(Media, item.id), browser.application.config["SECRET_KEY"])
    assert fetch(lms_side(browser.application),
                 f"/media/{item.id}/thumbnail?token={token}").status_code == 401


def test_an_unreadable_image_gets_the_placeholder(browser, lms, db):
    lms.launch(browser, roles=[INSTRUCTOR])
    upload(browser, db, content=SAMPLES["image/png"], filename="broken.png")
    item = db.session.scalar(sa.select(Media))
    assert item.thumbnail_path is None
    response = browser.get(f"/media/{item.id}/thumbnail")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/static/img/image.svg")


def test_an_item_whose_recorded_preview_is_the_file_itself_gets_the_placeholder(
        app, browser, lms, db):
    item = uploaded_image(browser, lms, db)
    stored = db.session.get(Media, item.id)
    stored.thumbnail_path = stored.file_path  # as items stored before previews recorded it
    db.session.commit()
    response = browser.get(f"/media/{item.id}/thumbnail")
    assert response.status_code == 302 and response.headers["Location"].endswith(".svg")


# 8. Served user files run sandboxed


def test_every_served_user_file_is_sandboxed(app, browser, lms, db):
    item = uploaded_image(browser, lms, db)
    page = browser.get(f"/media/{item.id}/edit")
    browser.post(f"/media/{item.id}/edit", headers=REFERER,
                 content_type="multipart/form-data", data={
                     "csrf_token": csrf(page), "title": "Slide", "description": "",
                     "category": str(course(db).id), "visibility": "members",
                     "captions": (io.BytesIO(b"WEBVTT\n\n00:00.000 --> 00:01.000\nHi\n"),
                                  "en.vtt")})
    upload(browser, db, content=SAMPLES["application/pdf"], filename="notes.pdf")
    pdf = db.session.scalar(sa.select(Media).where(Media.mime_type == "application/pdf"))
    for url in (f"/media/{item.id}/file", f"/media/{item.id}/thumbnail",
                f"/media/{item.id}/captions.vtt", f"/media/{pdf.id}/file"):
        response = fetch(browser, url)
        assert response.status_code == 200, url
        assert response.headers["Content-Security-Policy"] == "sandbox", url
    player = browser.get(f"/media/{pdf.id}")
    assert "sandbox" not in player.headers["Content-Security-Policy"]


# 14. No usable signing key when the picker answers


def test_a_key_that_cannot_sign_gets_the_doctors_page_and_a_log_entry(browser, lms, db):
    item = uploaded_image(browser, lms, db, visibility="public")
    url, page = open_picker(browser, lms)
    key = db.session.scalar(sa.select(ToolKey).where(ToolKey.current.is_(True)))
    if key is None:
        browser.get("/lti/jwks")  # makes the first key
        key = db.session.scalar(sa.select(ToolKey).where(ToolKey.current.is_(True)))
    key.private_key = b"encrypted with another SECRET_KEY"
    db.session.commit()
    response = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(page), "media_ids": [str(item.id)], "action": "add"})
    assert response.status_code == 503
    text = response.get_data(as_text=True)
    assert "could not add the media to your course" in text and "keys rotate" in text
    assert 'name="JWT"' not in text
    entry = db.session.scalar(sa.select(LTILaunchLog).where(LTILaunchLog.success.is_(False)))
    assert entry.error_category == "tool_key_unavailable"
    assert f"#{entry.id}" in text


# Code health: a colleague's media, and a course's 201st item


def test_a_course_manager_edits_a_colleagues_media(app, browser, lms, db):
    item = uploaded_image(browser, lms, db)
    colleague = new_browser(app)
    lms.launch(colleague, roles=[INSTRUCTOR], sub="777", ext={"user_username": "colleague"})
    page = colleague.get(f"/media/{item.id}/edit")
    assert page.status_code == 200
    response = colleague.post(f"/media/{item.id}/edit", headers=REFERER, data={
        "csrf_token": csrf(page), "title": "Renamed by a colleague", "description": "",
        "category": str(course(db).id), "visibility": "members"})
    assert response.status_code == 303
    db.session.expire_all()
    assert db.session.get(Media, item.id).title == "Renamed by a colleague"
    learner = new_browser(app)
    lms.launch(learner, roles=[LEARNER], sub="778", ext={"user_username": "learner"})
    assert learner.get(f"/media/{item.id}/edit").status_code == 403


def test_a_courses_201st_item_is_reachable(app, browser, lms, db):
    response = lms.launch(browser, roles=[LEARNER])
    page_url = response.headers["Content-Location"]
    category = course(db)
    total = 201
    db.session.add_all([Media(title=f"Item {n:03d}", file_path=f"{n}.mp4", size=1,
                              mime_type="video/mp4", category=category,
                              visibility=Visibility.MEMBERS) for n in range(total)])
    db.session.commit()
    seen: list[str] = []
    url = None  # the first page: the launch's own answer, whose "Next page" leads on
    for _ in range(total):
        if url is None:
            text = lms.launch(browser, roles=[LEARNER]).get_data(as_text=True)
        else:
            text = browser.get(url).get_data(as_text=True)
            assert url.startswith(f"{page_url}?"), url
        seen += re.findall(r"Item \d{3}", text)
        found = re.search(r'<a [^>]*rel="next"[^>]*>', text)
        if found is None:
            break
        url = html.unescape(re.search(r'href="([^"]+)"', found.group(0)).group(1))
    assert sorted(seen) == sorted(f"Item {n:03d}" for n in range(total))
    assert len(seen) == total, "no item twice"
    assert seen[0] == "Item 200" and seen[-1] == "Item 000"
    assert len(re.findall(r"Item \d{3}", browser.get(page_url).get_data(as_text=True))) == (
        access.PAGE_SIZE)


# NUL bytes in upload file names


def test_a_nul_byte_in_an_upload_name_is_refused_and_stores_nothing(app, browser, lms, db):
    lms.launch(browser, roles=[INSTRUCTOR])
    response = upload(browser, db, filename="lec\x00ture.mp4")
    assert 400 <= response.status_code < 500
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Media)) == 0
    root = Path(app.config["MEDIA_ROOT"])
    assert not root.exists() or not [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("name, shown", [
    ("lec\x00ture.mp4", "lecture.mp4"),
    ("C:\\Users\\me\\talk.mp4", "talk.mp4"),
    ("../../etc/passwd", "passwd"),
    ("tab\there.mp4", "tabhere.mp4"),
])
def test_display_names_keep_no_path_and_no_control_characters(name, shown):
    assert display_filename(name) == shown


def test_ones_own_media_pages_too(browser, lms, db):
    response = lms.launch(browser, roles=[INSTRUCTOR], context=DROP)
    page_url = response.headers["Content-Location"]
    me = db.session.scalar(sa.select(User).where(User.username == "ghopper"))
    db.session.add_all([Media(title=f"Mine {n:03d}", file_path=f"m{n}.mp4", size=1,
                              mime_type="video/mp4", owner=me, visibility=Visibility.PRIVATE)
                        for n in range(access.PAGE_SIZE + 1)])
    db.session.commit()
    first = browser.get(page_url).get_data(as_text=True)
    assert len(re.findall(r">Mine \d{3}<", first)) == access.PAGE_SIZE  # the cards' titles
    older = re.search(r'<a [^>]*rel="next"[^>]*>', first).group(0)
    last = browser.get(html.unescape(re.search(r'href="([^"]+)"', older).group(1)))
    assert re.findall(r">(Mine \d{3})<", last.get_data(as_text=True)) == ["Mine 000"]
