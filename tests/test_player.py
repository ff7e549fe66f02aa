"""Playing processed media: the MP4 and HLS renditions, the poster, the original for managers,
the status poll, retry and deletion, each behind the item's access check."""

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from markupsafe import escape

from lti_tool.models import Category, GroupRole, Job, Media, MediaStatus, Visibility
from lti_tool.services import media as media_files

from .conftest import csrf
from .test_media import fetch, member_of, sign_in

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")

HLS_FILES = ["master.m3u8", "360p/index.m3u8", "360p/init.mp4", "360p/seg_000.m4s"]


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def renditions(tmp_path_factory) -> Path:
    """What processing makes of a 2-second 160x120 clip (the layout of processing.py): the
    original as a .mov, video.mp4, hls/ (master, one rung, init and a segment), poster.jpg."""
    folder = tmp_path_factory.mktemp("renditions")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=2", "-f", "lavfi",
           "-i", "sine=duration=2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt",
           "yuv420p", "-c:a", "aac", "-shortest", "-movflags", "+faststart",
           str(folder / "video.mp4"))
    ffmpeg("-i", str(folder / "video.mp4"), "-c", "copy", "-f", "mov", str(folder / "original"))
    (folder / "hls").mkdir()
    ffmpeg("-i", str(folder / "video.mp4"), "-map", "0:v", "-map", "0:a", "-c", "copy",
           "-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod", "-hls_segment_type",
           "fmp4", "-hls_fmp4_init_filename", "init.mp4", "-hls_segment_filename",
           str(folder / "hls/%v/seg_%03d.m4s"), "-master_pl_name", "master.m3u8",
           "-var_stream_map", "v:0,a:0,name:360p", str(folder / "hls/%v/index.m3u8"))
    ffmpeg("-i", str(folder / "video.mp4"), "-frames:v", "1", str(folder / "poster.jpg"))
    return folder


@pytest.fixture
def people(db, make_user):
    """A course (Biology) with its teacher and student, and a student of another course."""
    biology, chemistry = Category(title="Biology"), Category(title="Chemistry")
    db.session.add_all([biology, chemistry])
    db.session.commit()
    people = {"teacher": make_user("teacher"), "student": make_user("student"),
              "other": make_user("other"), "manager": make_user("manager")}
    member_of(db, people["student"], biology)
    member_of(db, people["other"], chemistry)
    member_of(db, people["manager"], biology, GroupRole.MANAGER)
    people["course"] = biology
    return people


@pytest.fixture
def item(app, db, people, renditions):
    """Builder: a video item of the teacher's in Biology, in the state asked for; a ready one
    has its renditions stored as processing stores them."""

    def make(status=MediaStatus.READY, owner="teacher", **columns) -> Media:
        root = Path(app.config["MEDIA_ROOT"])
        name = uuid.uuid4().hex
        relative = f"{name[:2]}/{name}.mov"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(renditions / "original", root / relative)
        media = Media(title="Lecture", file_path=relative, original_filename="lecture 1.mov",
                      mime_type="video/quicktime", size=(root / relative).stat().st_size,
                      owner=people[owner], category=people["course"],
                      visibility=Visibility.MEMBERS, status=status)
        if status is MediaStatus.READY:
            folder = f"{name[:2]}/{name}.r1"
            shutil.copytree(renditions, root / folder, ignore=shutil.ignore_patterns("original"))
            media.renditions_path, media.playback_path = folder, f"{folder}/video.mp4"
            media.hls_path, media.poster_path = f"{folder}/hls/master.m3u8", f"{folder}/poster.jpg"
            media.duration, media.width, media.height, media.progress = 2.0, 160, 120, 100
        for key, value in columns.items():
            setattr(media, key, value)
        db.session.add(media)
        db.session.commit()
        return media

    return make


def as_(client, people, who: str | None):
    if who is not None:
        sign_in(client, people[who])
    return client


PLAYER_URLS = ["file", "poster", "status", "player", *(f"hls/{name}" for name in HLS_FILES)]


@pytest.mark.parametrize("url", PLAYER_URLS)
@pytest.mark.parametrize("who, status", [(None, 401), ("other", 403), ("student", 200),
                                         ("teacher", 200), ("manager", 200)])
def test_every_rendition_playlist_and_segment_is_behind_the_access_check(
    client, people, item, url, who, status
):
    media = item()
    response = fetch(as_(client, people, who), f"/media/{media.id}/{url}")
    assert response.status_code == status


@pytest.mark.parametrize("who, status", [(None, 401), ("other", 403), ("student", 403),
                                         ("teacher", 200), ("manager", 200)])
def test_the_original_is_a_download_for_those_who_manage_the_item(
    client, people, item, renditions, who, status
):
    media = item()
    response = fetch(as_(client, people, who), f"/media/{media.id}/original")
    assert response.status_code == status
    if status == 200:
        assert response.data == (renditions / "original").read_bytes()
        assert response.mimetype == "video/quicktime"
        assert response.headers["Content-Disposition"].startswith("attachment")
        assert 'filename="lecture 1.mov"' in response.headers["Content-Disposition"]
        assert response.headers["Content-Security-Policy"] == "sandbox"
        assert "private" in response.headers["Cache-Control"]


def test_the_player_gets_the_processed_mp4_not_the_original(client, people, item, renditions):
    media = item()
    sign_in(client, people["student"])
    response = fetch(client, f"/media/{media.id}/file")
    assert response.mimetype == "video/mp4"
    assert response.data == (renditions / "video.mp4").read_bytes()


def test_until_processed_the_file_is_the_original(client, people, item, renditions):
    media = item(MediaStatus.PROCESSING, progress=30)
    sign_in(client, people["teacher"])
    response = fetch(client, f"/media/{media.id}/file")
    assert response.mimetype == "video/quicktime"
    assert response.data == (renditions / "original").read_bytes()


def test_a_processed_audio_item_plays_its_m4a(app, client, db, people, item, renditions):
    media = item(mime_type="audio/mpeg", hls_path=None, poster_path=None)
    m4a = f"{media.renditions_path}/audio.m4a"
    shutil.copy(renditions / "video.mp4", Path(app.config["MEDIA_ROOT"]) / m4a)
    media.playback_path = m4a
    db.session.commit()
    sign_in(client, people["student"])
    assert fetch(client, f"/media/{media.id}/file").mimetype == "audio/mp4"
    page = client.get(f"/media/{media.id}").get_data(as_text=True)
    assert "<audio" in page and "data-hls" not in page


@pytest.mark.parametrize("url, mimetype", [
    ("hls/master.m3u8", "application/vnd.apple.mpegurl"),
    ("hls/360p/index.m3u8", "application/vnd.apple.mpegurl"),
    ("hls/360p/init.mp4", "video/mp4"),
    ("hls/360p/seg_000.m4s", "video/iso.segment"),
    ("poster", "image/jpeg"),
])
def test_playlists_segments_and_poster_have_their_types(
    client, people, item, renditions, url, mimetype
):
    media = item()
    sign_in(client, people["student"])
    response = fetch(client, f"/media/{media.id}/{url}")
    assert response.status_code == 200 and response.mimetype == mimetype
    name = "poster.jpg" if url == "poster" else url
    assert response.data == (renditions / name).read_bytes()
    assert response.headers["Content-Security-Policy"] == "sandbox"
    assert "private" in response.headers["Cache-Control"]
    assert "public" not in response.headers["Cache-Control"]


@pytest.mark.parametrize("url", ["file", "hls/360p/seg_000.m4s"])
def test_range_requests_work_on_the_mp4_and_the_segments(client, people, item, renditions,
                                                         url):
    media = item()
    sign_in(client, people["student"])
    whole = (renditions / ("video.mp4" if url == "file" else url)).read_bytes()
    response = fetch(client, f"/media/{media.id}/{url}", headers={"Range": "bytes=100-299"})
    assert response.status_code == 206
    assert response.data == whole[100:300]
    assert response.headers["Content-Range"] == f"bytes 100-299/{len(whole)}"


@pytest.mark.parametrize("name", [
    "../video.mp4", "..%2Fvideo.mp4", "360p/../../video.mp4", "360p/../../../../original",
    "%2Fetc%2Fpasswd", "/etc/passwd", "360p", "missing.m3u8", "escape/index.m3u8",
    "notes.txt", "360p/seg_000.m4s.bak",
])
def test_nothing_outside_the_hls_folder_is_served(app, client, people, item, name):
    media = item()
    hls = Path(app.config["MEDIA_ROOT"]) / media.hls_path
    (hls.parent / "notes.txt").write_text("not a playlist")
    (hls.parent / "360p/seg_000.m4s.bak").write_text("nor a segment")
    outside = Path(app.config["MEDIA_ROOT"]) / "elsewhere"
    outside.mkdir()
    (outside / "index.m3u8").write_text("#EXTM3U\n")
    (hls.parent / "escape").symlink_to(outside)
    sign_in(client, people["student"])
    # Werkzeug first redirects a doubled slash to the single one.
    response = fetch(client, f"/media/{media.id}/hls/{name}", follow_redirects=True)
    assert response.status_code == 404


def test_no_hls_until_the_item_is_ready(client, people, item):
    media = item(MediaStatus.QUEUED)
    sign_in(client, people["student"])
    assert fetch(client, f"/media/{media.id}/hls/master.m3u8").status_code == 404


def test_the_poster_falls_back_to_the_preview_then_the_placeholder(
    app, client, db, people, item, renditions
):
    media = item(MediaStatus.QUEUED)
    sign_in(client, people["student"])
    response = fetch(client, f"/media/{media.id}/poster")
    assert response.status_code == 302 and response.headers["Location"].endswith(
        "/static/img/video.svg")
    preview = media.file_path.rsplit(".", 1)[0] + ".preview.jpg"
    shutil.copy(renditions / "poster.jpg", Path(app.config["MEDIA_ROOT"]) / preview)
    media.thumbnail_path = preview
    db.session.commit()
    response = fetch(client, f"/media/{media.id}/poster")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"


# The player page


def test_a_ready_video_plays_hls_with_the_mp4_as_its_fallback(client, people, item):
    media = item(captions_path=None)
    sign_in(client, people["student"])
    page = client.get(f"/media/{media.id}").get_data(as_text=True)
    assert "<video" in page
    assert f'data-hls="/media/{media.id}/hls/master.m3u8"' in page
    assert f'src="/media/{media.id}/file?v=' in page
    assert f'poster="/media/{media.id}/poster"' in page
    assert "/static/vendor/hls/hls.min.js" in page and "/static/js/player.js" in page
    assert "Waiting to be processed" not in page and "Processing" not in page
    assert "Download the original" not in page, "students get no original"


def test_managers_are_offered_the_original(client, people, item):
    media = item()
    sign_in(client, people["manager"])
    page = client.get(f"/media/{media.id}").get_data(as_text=True)
    assert f'href="/media/{media.id}/original"' in page and "Download the original" in page


def test_a_queued_item_says_it_waits_and_polls_its_status(client, people, item):
    media = item(MediaStatus.QUEUED)
    sign_in(client, people["student"])
    page = client.get(f"/media/{media.id}").get_data(as_text=True)
    assert "Waiting to be processed" in page and "<video" not in page
    assert f'data-status-url="/media/{media.id}/status"' in page
    assert f'data-player-url="/media/{media.id}/player"' in page


def test_a_processing_item_says_how_far_it_is_and_how_long_is_left(client, people, item):
    # No job running: the estimate comes from the duration (processing.py's measured 1.7 s of
    # work per second of video), less the 45 % done: 120 × 1.7 × 0.55 s ≈ 2 minutes.
    media = item(MediaStatus.PROCESSING, progress=45, duration=120.0)
    sign_in(client, people["student"])
    page = client.get(f"/media/{media.id}").get_data(as_text=True)
    assert "Processing: 45%, ready in about 2 minutes" in page
    report = client.get(f"/media/{media.id}/status").get_json()
    assert report["status"] == "processing" and report["progress"] == 45
    assert report["notice"] == "Processing: 45%, ready in about 2 minutes"


def test_the_player_fragment_is_the_player_alone(client, people, item):
    media = item()
    sign_in(client, people["student"])
    fragment = client.get(f"/media/{media.id}/player").get_data(as_text=True)
    assert "<video" in fragment and "data-hls" in fragment
    assert "<html" not in fragment and "<h1" not in fragment


def test_the_status_goes_from_queued_through_processing_to_ready(client, db, people, item):
    media = item(MediaStatus.QUEUED)
    sign_in(client, people["student"])

    def status() -> dict:
        response = client.get(f"/media/{media.id}/status")
        assert response.mimetype == "application/json"
        assert "no-store" in response.headers["Cache-Control"]
        return json.loads(response.data)

    assert status() | {"eta_minutes": None} == {
        "status": "queued", "progress": 0, "reason": "", "eta_minutes": None,
        "notice": "Waiting to be processed"}
    media.status, media.progress = MediaStatus.PROCESSING, 60
    db.session.commit()
    assert (status()["status"], status()["progress"]) == ("processing", 60)
    assert status()["notice"].startswith("Processing: 60%")
    media.status, media.progress = MediaStatus.READY, 100
    db.session.commit()
    assert (status()["status"], status()["notice"]) == ("ready", "Ready")


def test_a_failed_item_says_why_and_offers_its_managers_to_try_again(client, db, people, item):
    reason = "This file has no video or audio stream."
    media = item(MediaStatus.FAILED, status_reason=reason)
    sign_in(client, people["student"])
    assert client.get(f"/media/{media.id}/status").get_json()["reason"] == reason
    page = client.get(f"/media/{media.id}").get_data(as_text=True)
    assert f"Processing failed: {reason}" in page and "Try again" not in page
    sign_in(client, people["manager"])
    page = client.get(f"/media/{media.id}").get_data(as_text=True)
    assert "Try again" in page and f'action="/media/{media.id}/retry"' in page


# Retry


def jobs_of(db, media: Media) -> list[Job]:
    return list(db.session.scalars(sa.select(Job).where(Job.subject == f"media:{media.id}")))


@pytest.mark.parametrize("who", ["teacher", "manager"])
def test_the_owner_or_a_manager_processes_a_failed_item_again(client, db, people, item, who):
    media = item(MediaStatus.FAILED, status_reason="The file is cut short.")
    sign_in(client, people[who])
    page = client.get(f"/media/{media.id}")
    response = client.post(f"/media/{media.id}/retry", data={"csrf_token": csrf(page)})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/media/{media.id}")
    after = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Processing again" in after and "Waiting to be processed" in after
    db.session.refresh(media)
    assert media.status is MediaStatus.QUEUED and media.status_reason == ""
    [job] = jobs_of(db, media)
    assert job.kind == "media.process" and job.args == {"media_id": media.id}


def test_viewers_cannot_retry(client, db, people, item):
    media = item(MediaStatus.FAILED, status_reason="The file is cut short.")
    own = item(MediaStatus.FAILED, owner="student", status_reason="Cut short.")
    sign_in(client, people["student"])
    token = csrf(client.get(f"/media/{own.id}"))
    response = client.post(f"/media/{media.id}/retry", data={"csrf_token": token})
    assert response.status_code == 403
    db.session.refresh(media)
    assert media.status is MediaStatus.FAILED and jobs_of(db, media) == []


def test_retry_needs_the_csrf_token(client, db, people, item):
    media = item(MediaStatus.FAILED, status_reason="The file is cut short.")
    sign_in(client, people["teacher"])
    assert client.post(f"/media/{media.id}/retry").status_code == 400
    assert jobs_of(db, media) == []


@pytest.mark.parametrize("status", [MediaStatus.READY, MediaStatus.QUEUED,
                                    MediaStatus.PROCESSING])
def test_only_failed_items_are_tried_again(client, db, people, item, status):
    media = item(status)
    failed = item(MediaStatus.FAILED, status_reason="Cut short.")
    sign_in(client, people["teacher"])
    token = csrf(client.get(f"/media/{failed.id}"))
    response = client.post(f"/media/{media.id}/retry", data={"csrf_token": token})
    assert response.status_code == 303
    assert "nothing to try again" in client.get(response.headers["Location"]).get_data(
        as_text=True)
    db.session.refresh(media)
    assert media.status is status and jobs_of(db, media) == []


# Deleting


def test_deleting_an_item_removes_every_rendition(app, client, db, people, item):
    media = item()
    root = Path(app.config["MEDIA_ROOT"])
    folder = root / media.renditions_path
    assert (folder / "hls/360p/seg_000.m4s").is_file()
    sign_in(client, people["teacher"])
    page = client.get(f"/media/{media.id}/delete")
    response = client.post(f"/media/{media.id}/delete", data={"csrf_token": csrf(page)})
    assert response.status_code == 303
    assert not folder.exists() and not (root / media_files.preview_name(media.file_path)).exists()
    assert [p for p in root.rglob("*") if p.is_file()] == []


# Status in lists


def public_items(db, make_user) -> dict[MediaStatus, Media]:
    owner = make_user("other-teacher")
    items = {status: Media(title=f"Lecture {status}", file_path=f"{status}.mov",
                           mime_type="video/quicktime", size=1, owner=owner,
                           visibility=Visibility.PUBLIC, status=status,
                           progress=45 if status is MediaStatus.PROCESSING else 0,
                           status_reason="Cut short." if status is MediaStatus.FAILED else "")
             for status in MediaStatus}
    db.session.add_all(items.values())
    db.session.commit()
    return items


BADGES = {MediaStatus.QUEUED: "Waiting to be processed", MediaStatus.PROCESSING: "Processing 45%",
          MediaStatus.FAILED: "Failed"}


def test_the_picker_shows_each_status_and_offers_items_still_processing(browser, lms, db,
                                                                       make_user):
    from .test_deep_linking import REFERER, answer, open_picker

    items = public_items(db, make_user)
    url, page = open_picker(browser, lms)
    text = page.get_data(as_text=True)
    for status, badge in BADGES.items():
        card = re.search(rf">Lecture {status}</a></h2>(.*?)</li>", text, re.S).group(1)
        assert f'<span class="badge status-{status}"' in card
        assert badge in text
    assert 'class="badge status-ready"' not in text
    processing = items[MediaStatus.PROCESSING]
    assert f'name="media_ids" value="{processing.id}"' in text
    response = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(page), "media_ids": [str(processing.id)], "action": "add"})
    assert response.status_code == 200 and answer(response)[1]


def test_my_media_shows_each_status(client, db, make_user):
    items = public_items(db, make_user)
    sign_in(client, items[MediaStatus.READY].owner)
    text = client.get("/media/").get_data(as_text=True)
    for badge in BADGES.values():
        assert badge in text


def test_the_admin_links_page_shows_the_status_of_linked_media(admin, db, make_user,
                                                                make_platform):
    from lti_tool.models import LTIResourceLink

    items = public_items(db, make_user)
    platform = make_platform()
    db.session.add(LTIResourceLink(platform=platform, resource_link_id="rl-1",
                                   resource_link_title="Week 1",
                                   media=items[MediaStatus.PROCESSING]))
    db.session.commit()
    text = admin.get("/admin/links/").get_data(as_text=True)
    assert "Lecture processing" in text and "Processing 45%" in text


# Through the real pipeline (processing.py and transcode.py, run as a worker runs them)


def upload(client, people, path: Path, filename: str):
    sign_in(client, people["manager"])
    page = client.get("/media/upload")
    response = client.post("/media/upload", content_type="multipart/form-data", data={
        "csrf_token": csrf(page), "title": "Lecture", "description": "",
        "category": str(people["course"].id), "visibility": "members",
        "file": (path.open("rb"), filename)})
    assert response.status_code == 303, response.data[:300]
    return int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])


def test_an_upload_is_queued_then_processed_then_plays_hls(client, db, people, renditions):
    from lti_tool.services import jobs

    media_id = upload(client, people, renditions / "original", "lecture.mov")
    sign_in(client, people["student"])
    assert client.get(f"/media/{media_id}/status").get_json()["status"] == "queued"
    assert "Waiting to be processed" in client.get(f"/media/{media_id}").get_data(as_text=True)

    assert jobs.run_waiting() == 1

    report = client.get(f"/media/{media_id}/status").get_json()
    assert (report["status"], report["progress"], report["notice"]) == ("ready", 100, "Ready")
    player = client.get(f"/media/{media_id}/player").get_data(as_text=True)
    assert f'data-hls="/media/{media_id}/hls/master.m3u8"' in player
    played = fetch(client, f"/media/{media_id}/file")
    assert played.mimetype == "video/mp4"
    assert played.data != (renditions / "original").read_bytes(), "the processed MP4"
    # Follow the playlists as a player does: master, a rung, its init and first segment.
    master = fetch(client, f"/media/{media_id}/hls/master.m3u8").get_data(as_text=True)
    rung = next(line for line in master.splitlines() if line and not line.startswith("#"))
    playlist = fetch(client, f"/media/{media_id}/hls/{rung}")
    assert playlist.mimetype == "application/vnd.apple.mpegurl"
    folder = rung.rsplit("/", 1)[0]
    lines = playlist.get_data(as_text=True).splitlines()
    init = next(line.split('URI="')[1].rstrip('"') for line in lines if "EXT-X-MAP" in line)
    segment = next(line for line in lines if line and not line.startswith("#"))
    assert fetch(client, f"/media/{media_id}/hls/{folder}/{init}").mimetype == "video/mp4"
    assert fetch(client, f"/media/{media_id}/hls/{folder}/{segment}").status_code == 200
    assert fetch(client, f"/media/{media_id}/poster").mimetype == "image/jpeg"


def test_a_file_that_cannot_be_processed_fails_with_a_reason_and_is_tried_again(
    client, db, people, tmp_path
):
    from lti_tool.services import jobs

    from .test_media import MP4

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(MP4)  # an MP4's signature and nothing playable
    media_id = upload(client, people, broken, "broken.mp4")
    assert jobs.run_waiting() == 1
    report = client.get(f"/media/{media_id}/status").get_json()
    assert report["status"] == "failed" and report["reason"]
    page = client.get(f"/media/{media_id}")
    assert str(escape(f"Processing failed: {report['reason']}")) in page.get_data(as_text=True)
    response = client.post(f"/media/{media_id}/retry", data={"csrf_token": csrf(page)})
    assert response.status_code == 303
    assert client.get(f"/media/{media_id}/status").get_json()["status"] == "queued"
    assert jobs.run_waiting() == 1
    assert client.get(f"/media/{media_id}/status").get_json()["status"] == "failed"
