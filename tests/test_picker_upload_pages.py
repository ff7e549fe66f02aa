"""The picker's and the upload form's pages as the server renders them: the cards, the item
just uploaded coming back chosen, Cancel on every page of the upload, the title from the file's
name, the file choosers' `accept` filters and the same words for who may see an item."""

import html
import io
import re
from datetime import UTC, datetime

import sqlalchemy as sa

from lti_tool.media.forms import CAPTIONS_ACCEPT, MEDIA_ACCEPT, title_from_filename
from lti_tool.models import Category, Media, User, Visibility

from .conftest import csrf
from .lms import INSTRUCTOR
from .test_deep_linking import answer, open_picker, verify_as_the_platform
from .test_media import MP4
from .test_uploads import Tus

REFERER = {"Referer": "https://tool.example.org/media/upload"}
DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"


def course(db) -> Category:
    return db.session.scalar(sa.select(Category).where(Category.lti_context_id == "24"))


def me(db) -> User:
    return db.session.scalar(sa.select(User).where(User.username == "ghopper"))


def checked(page: str, media_id: int) -> bool:
    return bool(re.search(rf'name="media_ids" value="{media_id}"[^>]*\schecked>', page))


def cancel_href(page: str) -> str:
    return html.unescape(re.search(r'href="([^"]*)" data-cancel>Cancel</a>', page).group(1))


def post_upload(browser, db, url: str, **fields):
    form = browser.get(url)
    data = {"csrf_token": csrf(form), "title": "Fresh", "description": "",
            "category": str(course(db).id), "visibility": "members",
            "file": (io.BytesIO(MP4), "fresh.mp4")} | fields
    return browser.post(url, data=data, headers=REFERER, content_type="multipart/form-data")


def test_the_picker_shows_cards_with_duration_owner_date_and_who_sees_them(
    browser, lms, db, make_user
):
    url, _ = open_picker(browser, lms)
    owner = make_user("owner")
    owner.name = "Ada Lovelace"
    db.session.add(Media(title="Lecture 1", file_path="1.mp4", mime_type="video/quicktime",
                         size=1, owner=owner, visibility=Visibility.PUBLIC, duration=303,
                         created_at=datetime(2026, 11, 3, tzinfo=UTC)))
    db.session.commit()
    page = html.unescape(browser.get(url).get_data(as_text=True))
    assert '<ul class="cards">' in page and 'class="card"' in page
    assert "5:03" in page and "Ada Lovelace" in page and "3 Nov 2026" in page
    assert "Visible to: everyone" in page
    assert "video/quicktime" not in page and "· public" not in page
    assert re.search(r'type="checkbox" name="media_ids" value="\d+"', page)
    assert "Choose<span class=\"visually-hidden\"> “Lecture 1”</span>" in page
    assert "None chosen" in page and "Add to the course" in page
    assert '<dialog class="preview"' in page and "/static/js/picker.js" in page


def test_the_new_upload_comes_back_first_and_chosen_even_under_a_search(browser, lms, db,
                                                                          make_user):
    url, _ = open_picker(browser, lms)
    other = make_user("other")
    db.session.add_all([Media(title=f"Older {n}", file_path=f"{n}.mp4", mime_type="video/mp4",
                              size=1, owner=other, visibility=Visibility.PUBLIC)
                        for n in range(3)])
    db.session.commit()
    searched = f"{url}?q=older"
    posted = post_upload(browser, db, f"/media/upload?category={course(db).id}&next={searched}")
    fresh = db.session.scalar(sa.select(Media).where(Media.title == "Fresh"))
    assert posted.status_code == 303
    assert posted.headers["Location"] == f"{url}?q=older&selected={fresh.id}"
    page = html.unescape(browser.get(posted.headers["Location"]).get_data(as_text=True))
    assert re.findall(r"> “(\w+ ?\d?)”</span>", page)[0] == "Fresh"
    assert checked(page, fresh.id) and "1 chosen" in page
    assert "“Fresh” is chosen below. It is being processed now" in page
    # Added as it comes: the platform gets it.
    added = browser.post(url, data={"csrf_token": csrf(browser.get(url)), "action": "add",
                                    "media_ids": [str(fresh.id)]}, headers=REFERER)
    _, token = answer(added)
    items = verify_as_the_platform(browser, lms, token)[DL + "content_items"]
    assert [(i["title"], i["custom"]["media_id"]) for i in items] == [("Fresh", str(fresh.id))]


def test_only_an_item_the_teacher_may_use_comes_chosen(browser, lms, db, make_user):
    url, _ = open_picker(browser, lms)
    draft = Media(title="Someone's draft", file_path="d.mp4", mime_type="video/mp4", size=1,
                  owner=make_user("other"), visibility=Visibility.PRIVATE)
    db.session.add(draft)
    db.session.commit()
    for selected in (str(draft.id), "99999999999999999999", "x"):
        page = browser.get(f"{url}?selected={selected}")
        assert page.status_code == 200
        text = page.get_data(as_text=True)
        assert "Someone" not in text and " checked>" not in text


def test_a_tus_upload_from_the_picker_goes_back_to_it_chosen(browser, lms, db):
    url, _ = open_picker(browser, lms)
    tus = Tus(browser)
    _, last = tus.send(MP4 * 10, category=str(course(db).id), next=f"{url}?selected=7&after=3")
    fresh = db.session.scalar(sa.select(Media).order_by(Media.id.desc()))
    assert last.headers["Upload-Next-Location"] == f"{url}?selected={fresh.id}"


def test_cancel_goes_back_to_the_picker_on_every_page_of_the_upload(browser, lms, db):
    url, _ = open_picker(browser, lms)
    upload = f"/media/upload?category={course(db).id}&next={url}"
    first = browser.get(upload).get_data(as_text=True)
    assert cancel_href(first) == url
    refused = post_upload(browser, db, upload, file=(io.BytesIO(b"<html>"), "page.mp4"))
    assert refused.status_code == 400
    assert cancel_href(refused.get_data(as_text=True)) == url
    assert "data-from-picker" in first


def test_cancel_without_a_picker_goes_to_the_course_or_my_media(browser, lms, db):
    lms.launch(browser, roles=[INSTRUCTOR])
    course_id = course(db).id
    page = browser.get(f"/media/upload?category={course_id}").get_data(as_text=True)
    assert cancel_href(page) == f"/media/category/{course_id}"
    unsafe = browser.get(f"/media/upload?category={course_id}&next=//evil.example/")
    assert cancel_href(unsafe.get_data(as_text=True)) == f"/media/category/{course_id}"
    assert cancel_href(browser.get("/media/upload").get_data(as_text=True)) == "/media/"
    refused = post_upload(browser, db, "/media/upload", title="x" * 300)
    assert refused.status_code == 400
    assert cancel_href(refused.get_data(as_text=True)) == f"/media/category/{course_id}"


def test_without_a_title_the_file_name_gives_it(browser, lms, db):
    lms.launch(browser, roles=[INSTRUCTOR])
    posted = post_upload(browser, db, "/media/upload", title="",
                         file=(io.BytesIO(MP4), "week_3-cell-biology.mp4"))
    assert posted.status_code == 303
    assert db.session.scalar(sa.select(Media.title)) == "week 3 cell biology"


def test_titles_from_file_names():
    assert title_from_filename("lecture_04-intro.mp4") == "lecture 04 intro"
    assert title_from_filename("C:\\Users\\me\\My  talk.MOV") == "My talk"
    assert title_from_filename("notes") == "notes"
    assert title_from_filename(".hidden") == ".hidden"


def test_file_choosers_offer_what_the_tool_takes(browser, lms, db):
    lms.launch(browser, roles=[INSTRUCTOR])
    page = html.unescape(browser.get("/media/upload").get_data(as_text=True))
    assert f'accept="{MEDIA_ACCEPT}"' in page
    for kind in ("video/mp4", "video/quicktime", "audio/*", "image/png", "application/pdf",
                 ".mov", ".mp3", ".pdf"):
        assert kind in MEDIA_ACCEPT.split(",")
    assert "image/svg" not in MEDIA_ACCEPT and "text/html" not in MEDIA_ACCEPT
    post_upload(browser, db, "/media/upload")
    item = db.session.scalar(sa.select(Media))
    edit = html.unescape(browser.get(f"/media/{item.id}/edit").get_data(as_text=True))
    assert f'accept="{CAPTIONS_ACCEPT}"' in edit and CAPTIONS_ACCEPT == ".vtt,text/vtt"


def test_the_upload_form_says_who_sees_an_item_as_the_cards_do(browser, lms, db):
    lms.launch(browser, roles=[INSTRUCTOR])
    page = html.unescape(browser.get("/media/upload").get_data(as_text=True))
    assert "Visible to" in page
    options = re.findall(r'<option[^>]*value="(\w+)">([^<]+)</option>', page)
    assert ("members", "Course members") in options
    assert ("public", "Everyone") in options and ("private", "Only me") in options
    assert "data-upload-fields" in page, "the fields the script disables while uploading"
