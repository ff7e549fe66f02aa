"""Resumable uploads (tus 1.0): parts, drops and resumes, refusals, completion, cleanup."""

import base64
import hashlib
import io
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lti_tool.models import Category, Media, Upload, Visibility, utcnow
from lti_tool.services import uploads

from .conftest import HttpsClient, csrf
from .lms import INSTRUCTOR
from .test_media import MP4, REFUSED, SAMPLES

REFERER = {"Referer": "https://tool.example.org/media/upload"}
TUS = {"Tus-Resumable": "1.0.0"}
PART = "application/offset+octet-stream"
VIDEO = MP4 * 300  # 380 KB: several parts of 100 KB


def course(db) -> Category:
    return db.session.scalar(sa.select(Category).where(Category.lti_context_id == "24"))


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


class Tus:
    """A tus client speaking through the Flask test client, as tus-js-client does."""

    def __init__(self, browser):
        self.browser = browser
        self.headers = TUS | REFERER | {"X-CSRFToken": csrf(browser.get("/media/upload"))}

    def create(self, length: int, **fields: str):
        details = {"filename": "lecture.mp4", "title": "Lecture 5", "description": "Cells",
                   "visibility": "members"} | fields
        return self.browser.post("/media/uploads/", headers=self.headers | {
            "Upload-Length": str(length), "Upload-Metadata": metadata(**details)})

    def head(self, url: str):
        return self.browser.head(url, headers=self.headers)

    def patch(self, url: str, offset: int, body: bytes, **headers):
        return self.browser.patch(url, data=body, headers=self.headers | {
            "Content-Type": PART, "Upload-Offset": str(offset)} | headers)

    def send(self, content: bytes, part: int = 100_000, **fields: str):
        """Create an upload and send it all in parts; returns the last answer."""
        url = self.create(len(content), **fields).headers["Location"]
        offset, response = 0, None
        while offset < len(content):
            response = self.patch(url, offset, content[offset:offset + part])
            assert response.status_code == 204, response.get_data(as_text=True)
            offset = int(response.headers["Upload-Offset"])
        return url, response


@pytest.fixture
def tus(browser, lms, db):
    """A teacher of the course "24", signed in through a launch, speaking tus."""
    lms.launch(browser, roles=[INSTRUCTOR])
    return Tus(browser)


def count(db, model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def files(app) -> list[Path]:
    root = Path(app.config["MEDIA_ROOT"])
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_options_say_what_the_server_supports(client, app):
    response = client.options("/media/uploads/")
    assert response.status_code == 204
    assert response.headers["Tus-Resumable"] == response.headers["Tus-Version"] == "1.0.0"
    assert set(response.headers["Tus-Extension"].split(",")) == {
        "creation", "termination", "expiration"}
    assert int(response.headers["Tus-Max-Size"]) == app.config["MAX_UPLOAD_BYTES"]


def test_an_upload_sent_in_parts_becomes_one_item_of_the_teacher(tus, db, app):
    created = tus.create(len(VIDEO), category=str(course(db).id))
    assert created.status_code == 201 and created.headers["Tus-Resumable"] == "1.0.0"
    url = created.headers["Location"]
    assert url.startswith("/media/uploads/") and "Upload-Expires" in created.headers
    offset = 0
    for start in range(0, len(VIDEO), 100_000):
        response = tus.patch(url, offset, VIDEO[start:start + 100_000])
        assert response.status_code == 204
        offset = int(response.headers["Upload-Offset"])
        assert offset == min(start + 100_000, len(VIDEO))
    [item] = db.session.scalars(sa.select(Media))
    assert response.headers["Upload-Media-Location"] == f"/media/{item.id}"
    assert (item.title, item.description, item.mime_type, item.size) == (
        "Lecture 5", "Cells", "video/mp4", len(VIDEO))
    assert item.owner.username == "ghopper" and item.category_id == course(db).id
    assert item.visibility is Visibility.MEMBERS and item.original_filename == "lecture.mp4"
    stored = app.config["MEDIA_ROOT"] + "/" + item.file_path
    assert hashlib.sha256(Path(stored).read_bytes()).digest() == hashlib.sha256(VIDEO).digest()
    assert "lecture" not in item.file_path and item.file_path.endswith(".mp4")
    assert not any(p.suffix == ".part" for p in files(app)), "the part file became the item"
    page = tus.browser.get(response.headers["Upload-Media-Location"])
    assert "Added “Lecture 5”" in page.get_data(as_text=True)


def test_after_a_dropped_connection_head_reports_what_arrived_and_the_upload_resumes(
        tus, db, app):
    url = tus.create(len(VIDEO), category=str(course(db).id)).headers["Location"]
    # The connection drops after 150 KB of a part announced as the whole file.
    cut = tus.browser.patch(url, input_stream=io.BytesIO(VIDEO[:150_000]), headers=tus.headers | {
        "Content-Type": PART, "Upload-Offset": "0", "Content-Length": str(len(VIDEO))})
    assert cut.status_code == 204
    state = tus.head(url)
    assert state.status_code == 200 and state.headers["Cache-Control"] == "no-store"
    assert state.headers["Upload-Offset"] == "150000"
    assert state.headers["Upload-Length"] == str(len(VIDEO))
    assert count(db, Media) == 0
    done = tus.patch(url, 150_000, VIDEO[150_000:])
    assert done.status_code == 204 and done.headers["Upload-Offset"] == str(len(VIDEO))
    item = db.session.scalar(sa.select(Media))
    assert Path(app.config["MEDIA_ROOT"], item.file_path).read_bytes() == VIDEO


class Unplugged(io.RawIOBase):
    """A request body whose network goes away after `after` bytes."""

    def __init__(self, content: bytes, after: int):
        self.content, self.after, self.position = content, after, 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, position: int, whence: int = io.SEEK_SET) -> int:
        self.position = position + (len(self.content) if whence == io.SEEK_END else 0)
        return self.position

    def readinto(self, buffer) -> int:
        if self.position >= self.after:
            raise ConnectionResetError("connection reset by peer")
        n = min(len(buffer), self.after - self.position)
        buffer[:n] = self.content[self.position:self.position + n]
        self.position += n
        return n


def test_a_reset_connection_keeps_the_bytes_written_so_far(tus, db, app):
    big = MP4 * 2000  # 2 MB: the server writes 1 MB at a time
    url = tus.create(len(big), category=str(course(db).id)).headers["Location"]
    tus.browser.patch(url, input_stream=Unplugged(big, 1_500_000), headers=tus.headers | {
        "Content-Type": PART, "Upload-Offset": "0", "Content-Length": str(len(big))})
    offset = int(tus.head(url).headers["Upload-Offset"])
    assert 0 < offset <= 1_500_000, "what reached the disk is kept, nothing more"
    assert tus.patch(url, offset, big[offset:]).status_code == 204
    item = db.session.scalar(sa.select(Media))
    assert Path(app.config["MEDIA_ROOT"], item.file_path).read_bytes() == big


def test_a_part_at_the_wrong_offset_is_a_conflict(tus, db):
    url = tus.create(len(VIDEO), category=str(course(db).id)).headers["Location"]
    tus.patch(url, 0, VIDEO[:1000])
    response = tus.patch(url, 0, VIDEO[:1000])
    assert response.status_code == 409
    assert "continues from byte 1000" in response.get_data(as_text=True)
    assert tus.head(url).headers["Upload-Offset"] == "1000"


def test_a_part_sent_as_another_type_is_refused(tus, db):
    url = tus.create(len(VIDEO), category=str(course(db).id)).headers["Location"]
    response = tus.patch(url, 0, VIDEO[:1000], **{"Content-Type": "application/octet-stream"})
    assert response.status_code == 415
    assert tus.head(url).headers["Upload-Offset"] == "0"


def test_two_parts_of_one_upload_never_write_at_once(tus, db, app):
    url = tus.create(len(VIDEO), category=str(course(db).id)).headers["Location"]
    upload = db.session.get(Upload, url.rsplit("/", 1)[1])
    with uploads.locked(app.config["MEDIA_ROOT"], upload):  # another request is writing
        response = tus.patch(url, 0, VIDEO[:1000])
        assert response.status_code == 423
        assert tus.head(url).headers["Upload-Offset"] == "0"
    assert tus.patch(url, 0, VIDEO[:1000]).status_code == 204


def test_a_part_beyond_the_announced_length_is_refused(tus, db):
    url = tus.create(1000, category=str(course(db).id)).headers["Location"]
    assert tus.patch(url, 0, VIDEO[:1001]).status_code == 400
    assert tus.head(url).headers["Upload-Offset"] == "0"


def test_a_file_over_the_limit_is_refused_before_any_byte(tus, db, app):
    app.config["MAX_UPLOAD_BYTES"] = 100 * 1024
    response = tus.create(100 * 1024 + 1, category=str(course(db).id))
    assert response.status_code == 413
    assert response.get_data(as_text=True) == (
        "The file is larger than the limit of 100 KB. Nothing was saved.")
    assert count(db, Upload) == 0


def test_another_version_of_the_protocol_is_refused(tus, db):
    response = tus.browser.post("/media/uploads/", headers=tus.headers | {
        "Tus-Resumable": "0.2.2", "Upload-Length": "10",
        "Upload-Metadata": metadata(title="T", category=str(course(db).id))})
    assert response.status_code == 412 and response.headers["Tus-Version"] == "1.0.0"
    assert count(db, Upload) == 0


@pytest.mark.parametrize("fields, message", [
    ({"title": "  "}, "A title is required."),
    ({"title": "x" * 256}, "The title is longer than 255 characters."),
    ({"category": "elsewhere"}, "Choose one of the courses you may add media to."),
    ({"visibility": "everyone"}, "Choose who can see the item."),
])
def test_details_the_form_would_refuse_are_refused(tus, db, fields, message):
    response = tus.create(len(VIDEO), **({"category": str(course(db).id)} | fields))
    assert response.status_code == 400
    assert response.get_data(as_text=True) == message
    assert response.mimetype == "text/plain"
    assert count(db, Upload) == 0


def test_a_course_the_teacher_does_not_teach_is_refused(tus, db):
    other = Category(title="Chemistry")
    db.session.add(other)
    db.session.commit()
    response = tus.create(len(VIDEO), category=str(other.id))
    assert response.status_code == 400 and count(db, Upload) == 0


def test_an_upload_needs_the_csrf_token(tus, db):
    del tus.headers["X-CSRFToken"]
    assert tus.create(len(VIDEO), category=str(course(db).id)).status_code == 400
    assert count(db, Upload) == 0


def test_signed_out_browsers_cannot_upload(client):
    response = client.head("/media/uploads/abc", headers=TUS)
    assert response.status_code == 401


@pytest.mark.parametrize("content", [REFUSED["html"], REFUSED["svg"] * 20],
                         ids=["short-html", "long-svg"])
def test_content_of_a_refused_type_leaves_nothing_behind(tus, db, app, content):
    url = tus.create(len(content), category=str(course(db).id)).headers["Location"]
    response = tus.patch(url, 0, content)
    assert response.status_code == 415
    assert response.get_data(as_text=True) == uploads.REFUSED_TYPE
    assert count(db, Upload) == count(db, Media) == 0
    assert files(app) == []
    assert tus.head(url).status_code == 404


def test_a_type_is_recognised_across_parts(tus, db):
    pdf = SAMPLES["application/pdf"] * 20
    url, _ = tus.send(pdf, part=100, category=str(course(db).id))
    assert db.session.scalar(sa.select(Media.mime_type)) == "application/pdf"


def test_another_users_upload_is_not_found(tus, db, lms, app):
    url = tus.create(len(VIDEO), category=str(course(db).id)).headers["Location"]
    tus.patch(url, 0, VIDEO[:1000])
    other = HttpsClient(app, app.response_class, use_cookies=True)
    lms.launch(other, roles=[INSTRUCTOR], sub="someone-else")
    headers = TUS | REFERER | {"X-CSRFToken": csrf(other.get("/media/upload"))}
    for method in ("HEAD", "PATCH", "DELETE"):
        response = other.open(url, method=method, data=b"x", headers=headers | {
            "Content-Type": PART, "Upload-Offset": "1000"})
        assert response.status_code == 404, method
    assert tus.head(url).headers["Upload-Offset"] == "1000"


def test_the_last_part_repeated_adds_no_second_item(tus, db):
    content = VIDEO[:250_000]
    url, last = tus.send(content, category=str(course(db).id))
    again = tus.patch(url, 200_000, content[200_000:])
    assert again.status_code == 204
    assert again.headers["Upload-Media-Location"] == last.headers["Upload-Media-Location"]
    state = tus.head(url)
    assert state.headers["Upload-Offset"] == str(len(content))
    assert state.headers["Upload-Media-Location"] == last.headers["Upload-Media-Location"]
    assert count(db, Media) == 1


def test_from_the_picker_the_teacher_goes_back_to_it(tus, db):
    picker = "/launch/deep-link?x=1"
    _, last = tus.send(VIDEO[:1000], category=str(course(db).id), next=picker)
    assert last.headers["Upload-Next-Location"] == picker
    _, last = tus.send(VIDEO[:1000], category=str(course(db).id), next="//evil.example/")
    assert last.headers["Upload-Next-Location"] == last.headers["Upload-Media-Location"]


def test_a_deleted_upload_leaves_nothing(tus, db, app):
    url = tus.create(len(VIDEO), category=str(course(db).id)).headers["Location"]
    tus.patch(url, 0, VIDEO[:5000])
    response = tus.browser.delete(url, headers=tus.headers)
    assert response.status_code == 204 and response.headers["Tus-Resumable"] == "1.0.0"
    assert count(db, Upload) == 0 and files(app) == []
    assert tus.head(url).status_code == 404


def test_an_expired_upload_is_not_found(tus, db, app):
    url = tus.create(len(VIDEO), category=str(course(db).id)).headers["Location"]
    upload = db.session.get(Upload, url.rsplit("/", 1)[1])
    upload.updated_at = utcnow() - timedelta(hours=25)
    db.session.commit()
    assert tus.head(url).status_code == 404


def test_abandoned_uploads_are_removed_and_fresh_ones_kept(tus, db, app):
    root = app.config["MEDIA_ROOT"]
    old_url = tus.create(len(VIDEO), category=str(course(db).id)).headers["Location"]
    tus.patch(old_url, 0, VIDEO[:5000])
    fresh_url = tus.create(len(VIDEO), category=str(course(db).id)).headers["Location"]
    tus.patch(fresh_url, 0, VIDEO[:5000])
    done_url, _ = tus.send(VIDEO[:2000], category=str(course(db).id))
    old, fresh, done = (db.session.get(Upload, u.rsplit("/", 1)[1])
                        for u in (old_url, fresh_url, done_url))
    for upload in (old, done):
        upload.updated_at = utcnow() - timedelta(hours=30)
    db.session.commit()
    lone = uploads.part_path(root, "left-by-a-crash")
    lone.write_bytes(b"x" * 100)
    an_hour_ago = time.time() - 3600 * 30
    os.utime(lone, (an_hour_ago, an_hour_ago))
    lone_fresh = uploads.part_path(root, "just-created")
    lone_fresh.write_bytes(b"x")

    assert uploads.remove_abandoned(root, timedelta(hours=24)) == 2
    db.session.commit()
    assert set(db.session.scalars(sa.select(Upload.id))) == {fresh.id}
    parts = {p.name for p in files(app) if p.suffix == ".part"}
    assert parts == {f"{fresh.id}.part", "just-created.part"}
    assert count(db, Media) == 1, "the finished upload's item stays"
    assert tus.head(fresh_url).headers["Upload-Offset"] == "5000"


def test_an_item_that_cannot_be_added_leaves_no_file_and_no_row(tus, db, app):
    url = tus.create(len(VIDEO), category=str(course(db).id)).headers["Location"]
    tus.patch(url, 0, VIDEO[:100_000])
    upload = db.session.get(Upload, url.rsplit("/", 1)[1])
    upload.details = upload.details | {"title": "x" * 300}  # refused when the item is added
    db.session.commit()
    response = tus.patch(url, 100_000, VIDEO[100_000:])
    assert response.status_code == 500 and response.mimetype == "text/plain"
    assert "could not be saved" in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert count(db, Upload) == count(db, Media) == 0
    assert files(app) == []
