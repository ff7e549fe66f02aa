"""Scheduled upkeep, run as short jobs by the scheduler (see worker.py's beat schedule)."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app

from ..extensions import db
from . import audit, jobs

log = logging.getLogger(__name__)

JOBS_KEPT = timedelta(days=30)  # finished jobs stay visible this long (failed ones twice that)


@jobs.handler("audit.prune", queue=jobs.SHORT)
def prune_launch_log(context: jobs.Context) -> None:
    """Launch log entries older than AUDIT_RETENTION_DAYS go (in batches)."""
    audit.prune(timedelta(days=current_app.config["AUDIT_RETENTION_DAYS"]))


@jobs.handler("uploads.cleanup", queue=jobs.SHORT)
def remove_abandoned_uploads(context: jobs.Context) -> None:
    """Resumable uploads nobody finished (and their part files) go after UPLOAD_EXPIRY_HOURS."""
    from . import uploads  # the resumable uploads' service

    removed = uploads.remove_abandoned(
        current_app.config["MEDIA_ROOT"],
        timedelta(hours=current_app.config["UPLOAD_EXPIRY_HOURS"]))
    db.session.commit()
    log.info("Removed %d abandoned uploads", removed)


@jobs.handler("jobs.forget", queue=jobs.SHORT)
def forget_finished_jobs(context: jobs.Context) -> None:
    removed = jobs.remove_finished(JOBS_KEPT)
    db.session.commit()
    log.info("Forgot %d finished jobs", removed)
