"""Real Celery workers (the broker of the run: SQLite by default, Redis in CI's second pass)
process uploads, and a worker killed in the middle of a transcode loses nothing: the sweep puts
the job back, another worker runs it, and no half-written file is left."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lti_tool.models import Job, JobState, LTIPlatform, Media, MediaStatus
from lti_tool.services import jobs, media, processing

ROOT = Path(__file__).resolve().parent.parent
FINISHED = (MediaStatus.READY, MediaStatus.FAILED)

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "ffmpeg"], capture_output=True).returncode != 0,
    reason="media processing needs ffmpeg (make test installs it)")


def make_clip(path: Path, seconds: int, size: str = "320x240") -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc2=size={size}:rate=30:duration={seconds}", "-f", "lavfi", "-i",
         f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
         "-c:a", "aac", "-shortest", str(path)],
        check=True, timeout=120)
    return path


@contextmanager
def worker(app, name: str, queues: str = "short,long",
           stop: signal.Signals = signal.SIGQUIT) -> Iterator[subprocess.Popen]:
    """`celery -A wsgi.celery worker` on both queues, on the test's database, instance folder
    and broker; stopped (or found already killed) on exit."""
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL")}
    env |= {"DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
            "INSTANCE_PATH": app.instance_path}
    log = open(Path(app.instance_path).parent / f"{name}.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "wsgi.celery", "worker", "-Q", queues,
         "-c", "1", "-n", f"{name}@%h", "--without-mingle", "--without-gossip",
         "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, stop)  # SIGQUIT: cold shutdown, running jobs stop too
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.seek(0)
        print(log.read())  # shown by pytest when the test fails
        log.close()


def wait_for(db, check, seconds: float = 90, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        db.session.expire_all()
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def add_video(app, db, clip: Path) -> Media:
    with open(clip, "rb") as stream:
        item = media.add_media(stream, root=app.config["MEDIA_ROOT"], max_bytes=10**9,
                               title="Lecture", original_filename=clip.name)
    job = processing.queue_processing(item)
    db.session.commit()
    jobs.dispatch(job)
    return item


def leftovers(app) -> list[str]:
    """Temporary folders and part files processing may leave behind."""
    root = Path(app.config["MEDIA_ROOT"])
    return [str(p.relative_to(root)) for p in root.rglob("*") if ".part" in p.name]


def test_a_worker_processes_an_upload_through_the_broker(app, db, tmp_path):
    item = add_video(app, db, make_clip(tmp_path / "clip.mp4", 2))
    assert item.status is MediaStatus.QUEUED
    with worker(app, "one"):
        wait_for(db, lambda: db.session.get(Media, item.id).status in FINISHED,
                 what="the item to be processed")
    item = db.session.get(Media, item.id)
    assert item.status is MediaStatus.READY, item.status_reason
    assert item.playback_path.endswith("/video.mp4") and item.hls_path
    assert (Path(app.config["MEDIA_ROOT"]) / item.playback_path).is_file()
    job = db.session.scalar(sa.select(Job))
    assert job.state is JobState.DONE and job.attempts == 1 and job.worker.startswith(
        os.uname().nodename)


def test_a_worker_killed_mid_transcode_leaves_no_half_files_and_the_job_runs_again(
        app, db, tmp_path):
    item = add_video(app, db, make_clip(tmp_path / "long.mp4", 20, "640x360"))
    with worker(app, "doomed") as doomed:
        wait_for(db, lambda: db.session.scalar(sa.select(Job.state)) is JobState.RUNNING,
                 what="the transcode to start")
        time.sleep(1.5)
        os.killpg(doomed.pid, signal.SIGKILL)  # the host loses power
        doomed.wait()
    source = str(Path(app.config["MEDIA_ROOT"]) / item.file_path)
    time.sleep(0.5)
    survivors = subprocess.run(["pgrep", "-f", source], capture_output=True, text=True)
    assert survivors.stdout == "", "no ffmpeg keeps running for a killed worker"
    job = db.session.scalar(sa.select(Job))
    db.session.refresh(job)
    assert job.state is JobState.RUNNING, "the ledger still thinks it runs..."
    assert db.session.get(Media, item.id).status is MediaStatus.PROCESSING

    # ... until the scheduled sweep finds its heartbeat stopped
    swept = jobs.sweep(now=jobs.utcnow() + jobs.STALE_AFTER + timedelta(seconds=1))
    assert swept["requeued"] == 1 and swept["resent"] == 1
    with worker(app, "rescuer"):
        wait_for(db, lambda: db.session.get(Media, item.id).status in FINISHED,
                 seconds=180, what="the rescued job to finish")
    assert db.session.get(Media, item.id).status is MediaStatus.READY
    job = db.session.get(Job, job.id, populate_existing=True)
    assert job.state is JobState.DONE and job.attempts == 2
    assert leftovers(app) == [], "no half-written files"
    renditions = [p for p in Path(app.config["MEDIA_ROOT"]).rglob("*.r*") if p.is_dir()]
    assert [p.name for p in renditions] == [Path(item.file_path).stem + f".r{job.id}"]


def test_short_jobs_do_not_wait_behind_a_transcode(app, db, tmp_path, lms):
    add_video(app, db, make_clip(tmp_path / "long.mp4", 30, "640x360"))
    with worker(app, "long", "long", signal.SIGKILL), worker(app, "short", "short"):
        transcode = db.session.scalar(sa.select(Job).where(Job.kind == "media.process"))
        wait_for(db, lambda: db.session.get(Job, transcode.id).state is JobState.RUNNING,
                 what="the transcode to start")
        refresh = jobs.submit("platforms.refresh_keys", subject="platforms.refresh_keys")
        wait_for(db, lambda: db.session.get(Job, refresh.id).state is JobState.DONE,
                 what="the short job to run")
        assert db.session.get(Job, transcode.id).state is JobState.RUNNING, (
            "the short job ran while the transcode was still running")
        assert db.session.get(LTIPlatform, lms.platform.id).key_set is not None
