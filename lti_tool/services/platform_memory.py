"""Platforms kept in memory between requests, so that neither a login nor a launch reads its
platform from the database each time.

A login only sends the browser on to the LMS: its memory is trusted for MEMORY_SECONDS. A
launch decides, so its memory is also checked against the platforms' generation in the shared
cache: every committed write of a platform or a role mapping, in any process on any host,
gives a new generation, and a launch that reads another generation than the one its memory
was made at reads the platform afresh. The launch reads the generation with its login record,
in the same cache round trip. A refusal (unknown, switched off, a deployment not allowed) is
never taken from memory.
"""

from __future__ import annotations

import copy
import logging
import secrets
import time

from flask import current_app, has_app_context
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, make_transient_to_detached, object_session

from ..extensions import cache, db
from ..models import LTIPlatform, LTIRoleMapping
from .tool_conf import check_deployment, deployment_allowed, find_platform

log = logging.getLogger(__name__)

MEMORY_SECONDS = 5.0  # how long a platform found active is reused without the database
GENERATION_KEY = "lti-platforms-generation"
_LOGINS = "lti_tool.login_platforms"  # in app.extensions: (issuer, client ID) -> entry
_LAUNCHES = "lti_tool.launch_platforms"
_CHANGED = "lti_tool.platforms_changed"  # in a session's info: a platform write to announce


def login_platform(issuer: str | None, client_id: str | None,
                   deployment_id: str | None = None) -> LTIPlatform:
    """`find_platform` and `check_deployment` for the two requests of an OIDC login, from
    memory for MEMORY_SECONDS after a login found the platform active and the deployment
    allowed: neither request then reads the database or the cache.

    The launch decides (see `launch_platform`): a platform switched off in another process may
    see logins go on to the LMS for those seconds, and their launches refused.
    """
    memory = _memory(_LOGINS)
    known = memory.get((issuer, client_id))
    if known is not None and known[0] > time.monotonic() and (
            not deployment_id or deployment_allowed(known[1], deployment_id)):
        return db.session.merge(known[1], load=False)  # this request's copy, no SELECT
    platform = find_platform(issuer, client_id)
    if deployment_id:
        check_deployment(platform, deployment_id)
    memory[(issuer, client_id)] = (time.monotonic() + MEMORY_SECONDS, _detached(platform))
    return platform


def launch_platform(issuer: str | None, client_id: str, deployment_id: object,
                    generation: object) -> tuple[LTIPlatform, list[LTIRoleMapping]]:
    """The launch's platform, refused when unknown or switched off, and its role mappings.

    From memory only while `generation` (the cache's, read by this launch) is the one the
    memory was made at, for at most MEMORY_SECONDS, and when it allows `deployment_id` (the
    launch checks that itself, on what this returns); else from the database.
    """
    memory = _memory(_LAUNCHES)
    known = memory.get((issuer, client_id))
    if known is not None and known[0] > time.monotonic() and known[1] == generation and (
            isinstance(deployment_id, str) and deployment_allowed(known[2], deployment_id)):
        return db.session.merge(known[2], load=False), known[3]
    platform = find_platform(issuer, client_id, role_mappings=True)
    mappings = [_detached(m) for m in platform.role_mappings]
    memory[(issuer, client_id)] = (time.monotonic() + MEMORY_SECONDS, generation,
                                   _detached(platform), mappings)
    return platform, mappings


def platforms_changed() -> None:
    """Announce a committed platform write made outside the ORM (the ORM's are announced by
    themselves): this process forgets at once, the others at their next launch."""
    _forget()
    try:
        cache.set(GENERATION_KEY, secrets.token_hex(8), timeout=0)
    except Exception:  # the cache is down: the others forget within MEMORY_SECONDS
        log.warning("Could not announce a platform change in the cache", exc_info=True)


def _memory(name: str) -> dict:
    return current_app.extensions.setdefault(name, {})


def _forget() -> None:
    if has_app_context():
        for name in (_LOGINS, _LAUNCHES):
            current_app.extensions.get(name, {}).clear()


def _detached(instance):
    """A copy of the row's columns that belongs to no session (shared by threads, read only:
    each request merges its own copy)."""
    columns = inspect(type(instance)).column_attrs
    twin = type(instance)(**{a.key: copy.deepcopy(getattr(instance, a.key)) for a in columns})
    make_transient_to_detached(twin)
    return twin


@event.listens_for(LTIPlatform, "after_insert")
@event.listens_for(LTIPlatform, "after_update")
@event.listens_for(LTIPlatform, "after_delete")
@event.listens_for(LTIRoleMapping, "after_insert")
@event.listens_for(LTIRoleMapping, "after_update")
@event.listens_for(LTIRoleMapping, "after_delete")
def _written(mapper, connection, target) -> None:
    _forget()  # this process at once, even before the commit
    session = object_session(target)
    if session is not None:
        session.info[_CHANGED] = True


@event.listens_for(Session, "after_commit")
def _announce(session) -> None:
    if session.info.pop(_CHANGED, False):
        platforms_changed()


@event.listens_for(Session, "after_rollback")
def _nothing_to_announce(session) -> None:
    session.info.pop(_CHANGED, None)
