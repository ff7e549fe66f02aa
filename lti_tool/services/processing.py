"""Media processing: every video and audio upload becomes files any browser plays.

A `media.process` job (long queue) probes the original, converts it (services/transcode.py:
H.264/AAC MP4 with its index first, HLS renditions, poster and preview, or AAC audio) into a
new folder next to the original, then points the item at that folder and removes the previous
one. The original always stays. The item's status tells teachers where it is: queued,
processing (with percent), ready or failed (with a reason they understand).
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm.exc import StaleDataError

from ..extensions import db
from ..models import ACTIVE_JOB_STATES, Job, JobState, Media, MediaStatus
from . import jobs, transcode
from . import media as media_files

log = logging.getLogger(__name__)

KIND = "media.process"
PROGRESS_WRITE_SECONDS = 3  # the item's percent is written at most this often
# Before the first percent arrives, processing is guessed to take this many seconds per second
# of media (bench/transcode_bench.py measures it on the machine at hand).
SECONDS_PER_MEDIA_SECOND = 1.7
UNEXPECTED = ("Something went wrong while processing this file. Try again; if it fails again, "
              "an administrator can see why on the tool's dashboard.")


def subject(media: Media | int) -> str:
    return f"media:{media if isinstance(media, int) else media.id}"


def queue_processing(media: Media) -> Job | None:
    """Queue the item for processing (flushed; commit, then `jobs.dispatch(job)`). None for
    kinds that need none (images, PDFs). An item already queued or processing keeps its job."""
    if not media_files.needs_processing(media.mime_type):
        return None
    active = jobs.active_job(subject(media))
    if active is not None:
        return active
    media.status, media.progress, media.status_reason = MediaStatus.QUEUED, 0, ""
    db.session.flush()
    return jobs.enqueue(KIND, subject=subject(media), args={"media_id": media.id})


def _requeue(args: dict[str, Any]) -> Job | None:
    item = db.session.get(Media, args.get("media_id"))
    return queue_processing(item) if item is not None else None


def _failed(job: Job, error: Exception | None, reason: str) -> None:
    """The job has failed for good: the item says why, in words for its teacher."""
    item = db.session.get(Media, (job.args or {}).get("media_id"))
    if item is None:
        return
    item.status, item.progress = MediaStatus.FAILED, 0
    item.status_reason = (error.reason if isinstance(error, transcode.ProcessingFailed)
                          else UNEXPECTED)


@jobs.handler(KIND, queue=jobs.LONG, failed=_failed, requeue=_requeue)
def process(context: jobs.Context) -> None:
    media_id = context.args["media_id"]
    item = db.session.get(Media, media_id)
    if item is None:
        return  # deleted while it waited
    root = Path(current_app.config["MEDIA_ROOT"])
    item.status, item.progress, item.status_reason = MediaStatus.PROCESSING, 0, ""
    db.session.commit()
    source = root / item.file_path
    folder = f"{item.file_path.rsplit('.', 1)[0]}.r{context.job_id}"
    report = _ProgressReport(context, media_id)
    try:
        found = transcode.probe(source)
        _set(media_id, duration=found.duration)
        result = transcode.process(
            source, root / folder, progress=report,
            time_limit=current_app.config["JOB_TIME_LIMITS"][jobs.LONG][0] - 60)
    except transcode.ProcessingFailed as e:
        if e.transient:
            raise jobs.Transient(e.reason) from e
        raise
    _store(context, media_id, folder, result)


class _ProgressReport:
    """The progress callback: the job's heartbeat always, the item's percent now and then."""

    def __init__(self, context: jobs.Context, media_id: int) -> None:
        self.context, self.media_id, self.written = context, media_id, 0.0

    def __call__(self, percent: int) -> None:
        self.context.progress(percent)
        if time.monotonic() - self.written >= PROGRESS_WRITE_SECONDS:
            self.written = time.monotonic()
            _set(self.media_id, progress=percent)


def _set(media_id: int, **values: Any) -> None:
    """Update the item on the side, committed at once (the poll sees it)."""
    with db.engine.begin() as conn:
        conn.execute(update(Media).where(Media.id == media_id).values(**values))


def _store(context: jobs.Context, media_id: int, folder: str,
           result: transcode.Renditions) -> None:
    """Point the item at its new renditions (flushed: committed with the job's "done"); the
    previous ones go after that commit. If the item was deleted meanwhile, the new ones go."""
    root = current_app.config["MEDIA_ROOT"]
    item = db.session.get(Media, media_id, populate_existing=True)
    if item is None:
        media_files.discard_file(root, folder)
        return
    previous = item.renditions_path
    stale_preview = item.thumbnail_path if _inside(item.thumbnail_path, previous) else None

    def path(name: str | None) -> str | None:
        return f"{folder}/{name}" if name else None

    item.renditions_path = folder
    item.playback_path = path(result.playback)
    item.hls_path = path(result.hls)
    item.poster_path = path(result.poster)
    if result.preview:
        item.thumbnail_path = path(result.preview)
    elif stale_preview:
        item.thumbnail_path = None
    item.duration, item.width, item.height = result.duration, result.width, result.height
    item.status, item.progress, item.status_reason = MediaStatus.READY, 100, ""
    try:
        db.session.flush()
    except StaleDataError:
        db.session.rollback()
        media_files.discard_file(root, folder)
        return
    if previous and previous != folder:
        context.after_commit(lambda: media_files.discard_file(root, previous))
    log.info("Media %s ready: %s", media_id, folder)


def _inside(path: str | None, folder: str | None) -> bool:
    return bool(path and folder and path.startswith(f"{folder}/"))


def progress_report(media: Media, now: datetime | None = None) -> dict[str, Any]:
    """What the player's poll shows: status, percent, the failure reason and, while waiting
    or processing, about how many minutes are left (None when unknown)."""
    report: dict[str, Any] = {
        "status": media.status.value, "progress": media.progress,
        "reason": media.status_reason, "eta_minutes": None,
    }
    if media.status not in (MediaStatus.QUEUED, MediaStatus.PROCESSING):
        return report
    job = db.session.scalar(select(Job).where(Job.subject == subject(media),
                                              Job.state.in_(ACTIVE_JOB_STATES)))
    running = job if job is not None and job.state is JobState.RUNNING else None
    if running is not None:
        report["progress"] = max(media.progress, running.progress)
    report["eta_minutes"] = _minutes_left(running, report["progress"], media.duration,
                                          now or datetime.now(UTC))
    return report


def _minutes_left(job: Job | None, percent: int, duration: float | None,
                  now: datetime) -> int | None:
    """From the pace so far once there is one; before that, from the video's length and the
    measured SECONDS_PER_MEDIA_SECOND, less the share already done."""
    if job is not None and percent >= 3 and job.started_at:
        elapsed = (now - job.started_at).total_seconds()
        return max(1, math.ceil(elapsed * (100 - percent) / percent / 60))
    if duration:
        left = duration * SECONDS_PER_MEDIA_SECOND * (100 - percent) / 100
        return max(1, math.ceil(left / 60))
    return None


def reprocess(items: list[Media]) -> list[Job]:
    """Queue items again (e.g. after the recipes improved): flushed, commit then dispatch."""
    return [job for job in (queue_processing(item) for item in items) if job is not None]
