"""Processing as the tool records it: an item goes queued → processing → ready (its renditions,
poster, preview and figures stored) or failed (with a reason its teacher understands); running
again replaces the renditions; the player's poll gets an estimate of the time left."""

import math
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lti_tool.models import Job, JobState, Media, MediaStatus
from lti_tool.services import jobs, media, processing

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "ffmpeg"], capture_output=True).returncode != 0,
    reason="media processing needs ffmpeg (make test installs it)")


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=120)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    video, audio, silent = folder / "clip.mp4", folder / "talk.mp3", folder / "subs.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-f", "lavfi",
           "-i", "sine=frequency=440:duration=2", "-c:v", "libx264", "-preset", "ultrafast",
           "-c:a", "aac", "-shortest", str(video))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=2", "-c:a", "libmp3lame",
           str(audio))
    srt = folder / "subs.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nHello\n")
    ffmpeg("-i", str(srt), "-c:s", "mov_text", str(silent))
    return {"video": video, "audio": audio, "silent": silent}


def add(app, db, path: Path, title: str = "Lecture") -> Media:
    with open(path, "rb") as stream:
        item = media.add_media(stream, root=app.config["MEDIA_ROOT"], max_bytes=10**9,
                               title=title, original_filename=path.name)
    job = processing.queue_processing(item)
    db.session.commit()
    jobs.dispatch(job)
    return item


def processed(app, db, path: Path, title: str, **columns) -> Media:
    """`add` the file with `columns` set (owner, visibility, ...) and run its processing, as a
    worker would; the item as it then is."""
    item = add(app, db, path, title)
    for name, value in columns.items():
        setattr(item, name, value)
    db.session.commit()
    assert jobs.run_waiting() == 1
    return db.session.get(Media, item.id, populate_existing=True)


def files_under(app, relative: str | None) -> Path:
    return Path(app.config["MEDIA_ROOT"]) / relative


def test_a_video_is_processed_into_renditions_poster_and_preview(app, db, clips):
    item = add(app, db, clips["video"])
    assert item.status is MediaStatus.QUEUED and item.thumbnail_path is None
    assert jobs.run_waiting() == 1
    item = db.session.get(Media, item.id, populate_existing=True)
    assert item.status is MediaStatus.READY and item.progress == 100
    assert item.status_reason == ""
    for path in (item.playback_path, item.hls_path, item.poster_path, item.thumbnail_path):
        assert path.startswith(item.renditions_path + "/")
        assert files_under(app, path).is_file()
    assert (item.width, item.height) == (320, 240) and item.duration == pytest.approx(2, abs=0.2)
    assert files_under(app, item.file_path).is_file(), "the original stays"


def test_audio_becomes_aac_without_hls(app, db, clips):
    item = add(app, db, clips["audio"], "Talk")
    jobs.run_waiting()
    item = db.session.get(Media, item.id, populate_existing=True)
    assert item.status is MediaStatus.READY
    assert item.playback_path.endswith("/audio.m4a") and item.hls_path is None


def test_a_file_without_streams_fails_with_a_reason_for_its_teacher(app, db, clips):
    item = add(app, db, clips["silent"], "Subtitles only")
    jobs.run_waiting()
    item = db.session.get(Media, item.id, populate_existing=True)
    assert item.status is MediaStatus.FAILED
    assert item.status_reason == "This file has no video or audio stream."
    job = db.session.scalar(sa.select(Job))
    assert job.state is JobState.FAILED and job.attempts == 1, "not retried: it cannot work"
    assert item.renditions_path is None
    assert not [p for p in Path(app.config["MEDIA_ROOT"]).rglob("*") if ".r" in p.suffix or
                ".part" in p.name]


def test_processing_again_replaces_the_renditions(app, db, clips, runner):
    item = add(app, db, clips["video"])
    jobs.run_waiting()
    first = db.session.get(Media, item.id, populate_existing=True).renditions_path
    result = runner.invoke(args=["media", "reprocess", str(item.id)])
    assert result.exit_code == 0 and "Queued 1 media item for processing." in result.output
    item = db.session.get(Media, item.id, populate_existing=True)
    assert item.status is MediaStatus.QUEUED
    jobs.run_waiting()
    item = db.session.get(Media, item.id, populate_existing=True)
    assert item.status is MediaStatus.READY and item.renditions_path != first
    assert not files_under(app, first).exists(), "the previous renditions are removed"
    assert files_under(app, item.playback_path).is_file()


def test_reprocess_refuses_unknown_items_and_queues_all_video_and_audio(app, db, clips, runner):
    unknown = runner.invoke(args=["media", "reprocess", "999"])
    assert unknown.exit_code == 2 and unknown.output == "Error: Invalid value for 'ID': " \
        "no media item 999\n"
    add(app, db, clips["video"])
    add(app, db, clips["audio"], "Talk")
    jobs.run_waiting()
    result = runner.invoke(args=["media", "reprocess", "--all"])
    assert result.exit_code == 0 and "Queued 2 media items for processing." in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Job).where(
        Job.state == JobState.WAITING)) == 2


def test_an_item_deleted_while_it_waited_is_skipped(app, db, clips):
    item = add(app, db, clips["video"])
    for relative in media.delete_media(item):
        media.discard_file(app.config["MEDIA_ROOT"], relative)
    db.session.commit()
    assert jobs.run_waiting() == 1
    assert db.session.scalar(sa.select(Job.state)) is JobState.DONE
    assert not any(Path(app.config["MEDIA_ROOT"]).rglob("*.mp4"))


def test_the_poll_estimates_the_minutes_left(app, db, clips):
    item = add(app, db, clips["video"])
    item.duration = 600.0
    db.session.commit()
    report = processing.progress_report(item)
    # before it starts: the measured seconds of work per second of video
    assert report["status"] == "queued" and report["eta_minutes"] == math.ceil(
        600 * processing.SECONDS_PER_MEDIA_SECOND / 60)
    job = db.session.scalar(sa.select(Job))
    jobs.claim(job.id, "host:1")
    job = db.session.get(Job, job.id, populate_existing=True)
    job.progress = 25
    item.status = MediaStatus.PROCESSING
    db.session.commit()
    report = processing.progress_report(item, now=job.started_at + timedelta(minutes=2))
    # 2 minutes for the first quarter: 6 for the rest
    assert report["progress"] == 25 and report["eta_minutes"] == 6
