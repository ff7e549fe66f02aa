"""Scheduled upkeep, run as short jobs by the scheduler (see worker.py's beat schedule)."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from ..extensions import cache, db
from ..models import LTIPlatform
from . import audit, jobs, jwks

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
    log.info("Removed %d abandoned uploads", removed)


@jobs.handler("cache.sweep", queue=jobs.SHORT)
def sweep_file_cache(context: jobs.Context) -> None:
    """The file cache's expired entries go (launch states, used nonces); Redis expires its own."""
    sweep = getattr(cache.cache, "sweep", None)
    if sweep is not None:
        log.info("Removed %d expired cache entries", sweep())


@jobs.handler("jobs.forget", queue=jobs.SHORT)
def forget_finished_jobs(context: jobs.Context) -> None:
    removed = jobs.remove_finished(JOBS_KEPT)
    log.info("Forgot %d finished jobs", removed)


@jobs.handler("platforms.refresh_keys", queue=jobs.SHORT)
def refresh_platform_keys(context: jobs.Context) -> None:
    """Fetch every active platform's keyset, so a key it rotated in is known before the next
    launch needs it. A platform that does not answer keeps its stored keys and is logged."""
    platforms = list(db.session.scalars(
        select(LTIPlatform).where(LTIPlatform.active.is_(True)).order_by(LTIPlatform.id)))
    failed = []
    for n, platform in enumerate(platforms, 1):
        try:
            jwks.refresh_platform_keys(platform)
        except jwks.JWKSFetchError as e:
            log.warning("Keys of platform %r not refreshed: %s", platform.name, e)
            failed.append(platform.name)
        context.progress(100 * n // len(platforms))
    if failed and len(failed) == len(platforms):
        raise jobs.Transient(f"No platform's keyset could be fetched ({', '.join(failed)})")
