"""Adding, editing and deleting media from the browser, with the rights of each role."""

import io
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from lti_tool.models import Category, GlobalRole, LTIResourceLink, Media, Visibility

from .conftest import csrf
from .lms import INSTRUCTOR, LEARNER
from .test_media import MP4, REFUSED, played_as_uploaded, sign_in

TA = "http://purl.imsglobal.org/vocab/lis/v2/membership#TeachingAssistant"
REFERER = {"Referer": "https://tool.example.org/media/"}


def course(db) -> Category:
    return db.session.scalar(sa.select(Category).where(Category.lti_context_id == "24"))


def upload(browser, db, content=MP4, filename="lecture.mp4", **fields):
    page = browser.get("/media/upload")
    assert page.status_code == 200, page.data[:300]
    data = {"csrf_token": csrf(page), "title": "Lecture 3", "description": "Cells",
            "category": str(course(db).id), "visibility": "members",
            "file": (io.BytesIO(content), filename)} | fields
    return browser.post("/media/upload", data=data, headers=REFERER,
                        content_type="multipart/form-data")


def stored_files(app) -> list[Path]:
    root = Path(app.config["MEDIA_ROOT"])
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.mark.parametrize("role", [INSTRUCTOR, TA])
def test_course_teachers_upload_into_their_course(browser, lms, db, app, role):
    lms.launch(browser, roles=[role])
    response = upload(browser, db)
    assert response.status_code == 303
    item = db.session.scalar(sa.select(Media))
    assert response.headers["Location"].endswith(f"/media/{item.id}")
    assert (item.title, item.description, item.mime_type) == ("Lecture 3", "Cells", "video/mp4")
    assert item.category_id == course(db).id and item.owner.username == "ghopper"
    assert item.visibility is Visibility.MEMBERS and item.original_filename == "lecture.mp4"
    assert [p.read_bytes() for p in stored_files(app)] == [MP4]
    assert "Added" in browser.get(response.headers["Location"]).get_data(as_text=True)


def test_learners_cannot_upload_and_see_no_button(browser, lms, db):
    assert b"Add media" not in lms.launch(browser, roles=[LEARNER]).data
    assert browser.get("/media/upload").status_code == 403


def test_teachers_see_the_add_button_on_the_course_page(browser, lms):
    assert b"Add media" in lms.launch(browser, roles=[INSTRUCTOR]).data


def test_a_file_of_another_type_is_a_form_error_and_leaves_nothing(browser, lms, db, app):
    lms.launch(browser, roles=[INSTRUCTOR])
    response = upload(browser, db, content=REFUSED["svg"], filename="video.mp4")
    assert response.status_code == 400
    assert b"not accepted" in response.data
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Media)) == 0
    assert stored_files(app) == []


def test_a_file_over_the_limit_gets_a_clear_413(browser, lms, db, app):
    lms.launch(browser, roles=[INSTRUCTOR])
    # Bodies under 500 KB: werkzeug's test client leaks the temp file of larger ones.
    app.config["MAX_UPLOAD_BYTES"] = app.config["MAX_CONTENT_LENGTH"] = 100 * 1024
    response = upload(browser, db, content=MP4 * 200)
    assert response.status_code == 413
    assert b"larger than the limit of 100 KB" in response.data
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Media)) == 0
    assert stored_files(app) == []


def test_upload_needs_the_csrf_token(browser, lms, db):
    lms.launch(browser, roles=[INSTRUCTOR])
    response = upload(browser, db, csrf_token="")
    assert response.status_code == 400
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Media)) == 0


def test_upload_from_the_picker_returns_to_it(browser, lms, db):
    response = lms.launch(browser, message_type="LtiDeepLinkingRequest", roles=[INSTRUCTOR])
    picker, page = response.headers["Content-Location"], response
    assert b"Upload a new item" in page.data
    form = browser.get(f"/media/upload?category={course(db).id}&next={picker}")
    posted = browser.post(f"/media/upload?next={picker}", headers=REFERER,
                          content_type="multipart/form-data", data={
                              "csrf_token": csrf(form), "title": "Fresh", "description": "",
                              "category": str(course(db).id), "visibility": "members",
                              "file": (io.BytesIO(MP4), "fresh.mp4")})
    fresh = db.session.scalar(sa.select(Media).where(Media.title == "Fresh"))
    assert posted.status_code == 303
    assert posted.headers["Location"] == f"{picker}?selected={fresh.id}"
    back = browser.get(posted.headers["Location"]).get_data(as_text=True)
    assert re.search(rf'name="media_ids" value="{fresh.id}"[^>]*\schecked>', back)


def test_editors_may_upload_anywhere(client, db, make_user):
    editor = make_user("editor", global_role=GlobalRole.EDITOR)
    db.session.add(Category(title="Library"))
    db.session.commit()
    sign_in(client, editor)
    assert b"Library" in client.get("/media/upload").data


def test_owner_edits_details(browser, lms, db):
    lms.launch(browser, roles=[INSTRUCTOR])
    item_url = upload(browser, db).headers["Location"]
    item = db.session.scalar(sa.select(Media))
    page = browser.get(f"/media/{item.id}/edit")
    assert page.status_code == 200
    response = browser.post(f"/media/{item.id}/edit", headers=REFERER, data={
        "csrf_token": csrf(page), "title": "Lecture 3 (new cut)", "description": "Cells, v2",
        "category": str(course(db).id), "visibility": "public"})
    assert response.status_code == 303 and response.headers["Location"] == item_url
    db.session.expire_all()
    item = db.session.get(Media, item.id)
    assert (item.title, item.description, item.visibility) == (
        "Lecture 3 (new cut)", "Cells, v2", Visibility.PUBLIC)


def test_learners_cannot_edit_or_delete(app, browser, lms, db):
    lms.launch(browser, roles=[INSTRUCTOR])
    upload(browser, db)
    item = db.session.scalar(sa.select(Media))
    student = type(browser)(app, app.response_class, use_cookies=True)
    lms.launch(student, roles=[LEARNER], sub="999", ext={"user_username": "student"})
    assert student.get(f"/media/{item.id}/edit").status_code == 403
    assert student.get(f"/media/{item.id}/delete").status_code == 403
    assert b"Edit" not in student.get(f"/media/{item.id}").data


def test_deleting_media_removes_the_file_and_its_links_open_the_course(browser, lms, db, app):
    lms.launch(browser, roles=[INSTRUCTOR])
    upload(browser, db)
    item = db.session.scalar(sa.select(Media))
    lms.launch(browser, roles=[INSTRUCTOR], custom={"media_id": str(item.id)})
    confirm = browser.get(f"/media/{item.id}/delete")
    assert b"1 course link opens this item" in confirm.data
    response = browser.post(f"/media/{item.id}/delete", headers=REFERER,
                            data={"csrf_token": csrf(confirm)})
    assert response.status_code == 303
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Media)) == 0
    assert stored_files(app) == []
    db.session.expire_all()
    assert db.session.scalar(sa.select(LTIResourceLink.media_id)) is None
    relaunch = lms.launch(browser, roles=[LEARNER], custom={"media_id": str(item.id)})
    assert relaunch.headers["Content-Location"].endswith(f"/media/category/{course(db).id}")
    assert b"has been deleted" in relaunch.data


def test_media_not_shared_with_the_user_gets_a_clear_page(browser, lms, db, make_user):
    other = make_user("other")
    item = Media(title="Private draft", file_path="x.mp4", mime_type="video/mp4", size=1,
                 owner=other, visibility=Visibility.PRIVATE)
    db.session.add(item)
    db.session.commit()
    page = lms.launch(browser, custom={"media_id": str(item.id)})  # the launch answers with it
    assert page.status_code == 403 and b"not shared with you" in page.data
    assert browser.get(page.headers["Content-Location"]).status_code == 403


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
VTT = "WEBVTT\n\n00:00.000 --> 00:02.000\nHello, cells!\n"


def test_a_video_shows_the_placeholder_until_it_is_processed(browser, lms, db):
    lms.launch(browser, roles=[INSTRUCTOR])
    upload(browser, db)
    item = db.session.scalar(sa.select(Media))
    assert item.thumbnail_path is None
    response = browser.get(f"/media/{item.id}/thumbnail")
    assert response.status_code == 302 and response.headers["Location"].endswith(
        "/static/img/video.svg")
    with browser.get("/static/img/video.svg") as placeholder:
        assert placeholder.status_code == 200 and b"<svg" in placeholder.get_data()


def test_previews_need_a_session_or_the_signed_token(client, browser, lms, db):
    lms.launch(browser, roles=[INSTRUCTOR])
    upload(browser, db, content=PNG, filename="slide.png")
    item = db.session.scalar(sa.select(Media))
    assert client.get(f"/media/{item.id}/thumbnail").status_code == 401
    assert client.get(f"/media/{item.id}/thumbnail?token=forged").status_code == 401


def test_captions_are_added_served_and_played(browser, lms, db, app):
    lms.launch(browser, roles=[INSTRUCTOR])
    upload(browser, db)
    item = db.session.scalar(sa.select(Media))
    page = browser.get(f"/media/{item.id}/edit")
    response = browser.post(f"/media/{item.id}/edit", headers=REFERER,
                            content_type="multipart/form-data", data={
                                "csrf_token": csrf(page), "title": item.title,
                                "description": "", "category": str(course(db).id),
                                "visibility": "members",
                                "captions": (io.BytesIO(VTT.encode()), "en.vtt")})
    assert response.status_code == 303
    with browser.get(f"/media/{item.id}/captions.vtt") as captions:
        assert captions.mimetype == "text/vtt" and captions.get_data(as_text=True) == VTT
    played_as_uploaded(db, item)
    assert b'<track kind="captions"' in browser.get(f"/media/{item.id}").data
    confirm = browser.get(f"/media/{item.id}/delete")
    browser.post(f"/media/{item.id}/delete", headers=REFERER, data={"csrf_token": csrf(confirm)})
    assert stored_files(app) == [], "media and captions files are both gone"


def test_a_captions_file_that_is_not_webvtt_is_a_form_error(browser, lms, db):
    lms.launch(browser, roles=[INSTRUCTOR])
    upload(browser, db)
    item = db.session.scalar(sa.select(Media))
    page = browser.get(f"/media/{item.id}/edit")
    response = browser.post(f"/media/{item.id}/edit", headers=REFERER,
                            content_type="multipart/form-data", data={
                                "csrf_token": csrf(page), "title": "Changed title",
                                "description": "", "category": str(course(db).id),
                                "visibility": "members",
                                "captions": (io.BytesIO(b"1\n00:00:00,000 --> 00:00:02,000\nHi\n"),
                                             "en.srt")})
    assert response.status_code == 400 and b"not a WebVTT file" in response.data
    db.session.expire_all()
    assert db.session.get(Media, item.id).title == "Lecture 3", "nothing saved"
