"""Roster syncs in the background: the `nrps.sync` job and the launch's part (keeping the
course's roster address, queueing a sync when the last one is stale)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import LTIPlatform, RBACGroup, User
from . import claims as c
from . import jobs, nrps
from .nrps_reader import check_memberships_url
from .roles import MappedRoles

log = logging.getLogger(__name__)


def subject(group_id: int) -> str:
    return f"roster:{group_id}"


@jobs.handler("nrps.sync", queue=jobs.SHORT)
def sync_job(context: jobs.Context) -> None:
    """A background sync (after a teacher's launch). A platform outage is retried later; a
    sync already running (a manager's, a command's) makes this one unnecessary."""
    group = db.session.get(RBACGroup, context.args["group_id"])
    if group is None:
        return
    user = db.session.get(User, context.args["user_id"]) if context.args.get("user_id") else None
    try:
        _, error = nrps.sync_with_error(
            group, trigger=context.args.get("trigger", "launch"), user=user)
    except nrps.SyncRefused as e:
        log.info("Roster sync job of group %s not run: %s", group.id, e.reason)
        return
    if error is not None and getattr(error, "transient", False):
        raise jobs.Transient(error.reason)


def queue_sync(group: RBACGroup, *, trigger: str = "launch", user: User | None = None):
    """Queue a background sync of the course (flushed; commit, then `jobs.dispatch(job)`)."""
    return jobs.enqueue("nrps.sync", subject=subject(group.id),
                        args={"group_id": group.id, "trigger": trigger,
                              "user_id": user.id if user else None})


def is_stale(group: RBACGroup, max_age_hours: int, now: datetime | None = None) -> bool:
    synced = group.roster_synced_at
    if synced is None:
        return True
    if synced.tzinfo is None:
        synced = synced.replace(tzinfo=UTC)
    return (now or datetime.now(UTC)) - synced > timedelta(hours=max_age_hours)


def queue_sync_after_launch(data: dict[str, Any], platform: LTIPlatform,
                            group: RBACGroup | None, user: User, roles: MappedRoles):
    """A launch's part: keep the course's roster address from the NRPS claim (if the platform
    has NRPS on and the address passes the SSRF guard), and after a teacher's launch queue a
    sync when the last one is older than NRPS_SYNC_MAX_AGE hours.

    Returns the queued job (flushed; the caller commits, then dispatches) or None.
    """
    if group is None or not platform.enable_nrps:
        return None
    claim = data.get(c.NRPS)
    url = claim.get("context_memberships_url") if isinstance(claim, dict) else None
    if url is not None:
        try:
            url = check_memberships_url(platform, url)
        except ValueError as e:
            log.warning("Platform %r sent a memberships URL the tool will not fetch: %s",
                        platform.name, e)
        else:
            if group.memberships_url != url:
                group.memberships_url = url
    if not (roles.is_teacher and group.memberships_url
            and is_stale(group, current_app.config["NRPS_SYNC_MAX_AGE"])):
        return None
    return queue_sync(group, trigger="launch", user=user)


def syncable_groups(platform: LTIPlatform, context_id: str | None = None) -> list[RBACGroup]:
    """The platform's courses with a roster address (or the one with LTI context `context_id`,
    whether or not it has one), by id."""
    query = select(RBACGroup).where(RBACGroup.platform_id == platform.id)
    if context_id is not None:
        query = query.where(RBACGroup.lti_context_id == context_id)
    else:
        query = query.where(RBACGroup.memberships_url.is_not(None))
    return list(db.session.scalars(query.order_by(RBACGroup.id)))


def nrps_platforms() -> Iterable[LTIPlatform]:
    return db.session.scalars(
        select(LTIPlatform).where(LTIPlatform.enable_nrps.is_(True)).order_by(LTIPlatform.id))
