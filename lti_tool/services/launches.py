"""A launch from id_token to signed-in user: validation (message_launch.py), provisioning, the
roster sync it may start, and the launch log of successes and refusals."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from flask import after_this_request, has_request_context
from pylti1p3.exception import LtiException
from sqlalchemy import insert

from ..errors import LaunchError
from ..extensions import db
from ..models import Job, LaunchType, LTILaunchLog, LTIPlatform
from . import claims as c
from . import jobs, nrps_jobs
from .claims import sanitize
from .message_launch import ToolMessageLaunch, rejected
from .provisioning import Provisioned, provision_launch
from .tool_conf import LTIContext

log = logging.getLogger(__name__)

DOCTOR_DETAILS = "launch_doctor"


@dataclass
class LaunchResult:
    provisioned: Provisioned
    platform: LTIPlatform
    launch_id: str
    deep_linking: bool
    log_id: int


def run_launch(ctx: LTIContext, ip: str | None) -> LaunchResult:
    """Validate the posted id_token, provision, and log the success (flushed, not committed).

    Raises LaunchError with what was known (platform, claims) for the failure log.
    """
    try:
        message = ToolMessageLaunch(ctx)
    except LtiException as e:
        raise rejected(e) from None
    message.validate()
    body, platform = message.body, message.platform
    deep_linking = body[c.MESSAGE_TYPE] == c.DEEP_LINKING_REQUEST
    try:
        provisioned = provision_launch(body, platform, message.role_mappings)
        if deep_linking and not provisioned.roles.is_teacher:
            raise LaunchError(
                "role_not_allowed", "Only teaching roles may choose media (deep linking).",
                roles=", ".join(r.name for r in provisioned.roles.roles) or "none",
            )
    except LaunchError as e:
        e.platform, e.claims, e.deep_linking = platform, body, deep_linking
        e.login_params = message.login_params
        raise
    roster_job = nrps_jobs.queue_sync_after_launch(body, platform, provisioned.group,
                                              provisioned.user, provisioned.roles)
    if roster_job is not None:
        _dispatch_after_commit(roster_job)
    db.session.flush()  # what provisioning changed on the user's row, before the log entry
    log_id = db.session.execute(_LOG_SUCCESS, {
        "platform_id": platform.id,
        "user_id": provisioned.user.id,
        "resource_link_id": provisioned.resource_link_id,
        "launch_type": LaunchType.DEEP_LINKING if deep_linking else LaunchType.RESOURCE_LINK,
        "success": True,
        "claims": sanitize(body),
        "ip_address": ip,
    }).scalar_one()
    return LaunchResult(provisioned, platform, message.get_launch_id(), deep_linking, log_id)


# A statement, not an object: the unit of work would cost more than the row.
_LOG_SUCCESS = insert(LTILaunchLog.__table__).returning(LTILaunchLog.__table__.c.id)


def _dispatch_after_commit(job: Job) -> None:
    """Hand the job to the workers once the launch's view has committed (after its response is
    built): the launch never waits for the job. Without a request the sweep sends it."""
    if not has_request_context():
        return
    job_id = job.id

    @after_this_request
    def dispatch(response):
        committed = db.session.get(Job, job_id)  # gone if the launch was rolled back
        if committed is not None:
            jobs.dispatch(committed)
        return response


def log_failure(error: LaunchError, ip: str | None,
                also: Callable[[], object] | None = None) -> int | None:
    """Write the failed-launch entry in its own transaction (after the caller's rollback).

    Without a known platform there is no row to attach it to: the application log gets it.
    `also` writes more in the same transaction (the platform inbox's capture).
    Returns the entry's id, the reference shown on the error page.
    """
    db.session.rollback()
    if also is not None:
        also()
    if error.platform is None:
        db.session.commit()  # what `also` wrote, if anything
        log.warning(
            "Launch refused before a platform was known: %s: %s (ip %s)",
            error.category, _oneline(error.message), ip,
        )
        return None
    entry = LTILaunchLog(
        platform_id=error.platform.id,
        launch_type=LaunchType.DEEP_LINKING if error.deep_linking else LaunchType.RESOURCE_LINK,
        success=False,
        error_category=error.category,
        error_message=_oneline(error.message)[:2000],
        claims=sanitize(error.claims) | {
            # What the launch doctor's fix names (a deployment id, a kid, seconds of skew…),
            # so the audit page can show the fix in full.
            DOCTOR_DETAILS: {k: _oneline(str(v))[:200] for k, v in error.details.items()},
        },
        ip_address=ip,
    )
    db.session.add(entry)
    db.session.commit()
    log.info("Launch refused (%s), log entry #%s", error.category, entry.id)
    return entry.id


def _oneline(text: str) -> str:
    return " ".join(str(text).split())
