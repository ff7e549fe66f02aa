"""The platform inbox: refused logins and launches from unknown platforms or deployments, kept
for an admin to turn into a platform, a new deployment, or to dismiss."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from ..errors import LaunchError, ValidationError
from ..extensions import db
from ..models import InboxStatus, LTIPlatform, PlatformInboxEntry
from . import platforms
from .claims import DEPLOYMENT_ID, EXT, TOOL_PLATFORM, sanitize
from .claims import client_id as token_client_id
from .paging import newest_first

log = logging.getLogger(__name__)

CAPTURED = frozenset({"unknown_platform", "unknown_deployment"})
MAX_VALUE = 255  # the columns' length; a longer issuer could never be registered anyway
# Personal data the launch log keeps masked; the inbox, read before anyone is known, keeps none.
PERSONAL = ("email", "name", "given_name", "family_name", "sub", EXT)
PAGE_SIZE = 50


@dataclass(frozen=True)
class Key:
    """What identifies an inbox entry, taken from a refused request."""

    issuer: str
    client_id: str
    deployment_id: str


def capturable(error: LaunchError) -> Key | None:
    """The entry a refusal belongs in, or None: only unknown platforms (no platform found for
    the issuer and client ID) and unknown deployments of a known platform are captured.

    A refused launch names them in its (unverified) token, a refused login in its parameters.
    A request without a client ID is not captured: it could not be told apart from others.
    """
    if error.category not in CAPTURED:
        return None
    if (error.category == "unknown_platform") != (error.platform is None):
        return None  # e.g. PyLTI1p3 refusing a known platform's login: not an unknown one
    claims = error.claims if isinstance(error.claims, dict) else {}
    login = error.login_params or {}
    if claims.get("iss"):
        values = (claims.get("iss"), token_client_id(claims), claims.get(DEPLOYMENT_ID, ""))
    else:
        values = (login.get("iss"), login.get("client_id"), login.get("lti_deployment_id", ""))
    if error.platform is not None:  # the platform's own identity, not the request's spelling
        values = (error.platform.platform_id, error.platform.client_id, values[2])
    if not all(isinstance(v, str) and len(v) <= MAX_VALUE for v in values):
        return None
    key = Key(*(v.strip() for v in values))
    if not key.issuer or not key.client_id:
        return None
    if error.category == "unknown_deployment" and not key.deployment_id:
        return None
    return key


def capture(error: LaunchError, max_rows: int) -> bool:
    """Record a refusal in the inbox (added and flushed with the caller's transaction).

    One row per issuer, client ID and deployment: a repeat bumps its counter and last-seen
    time in one atomic upsert. Past `max_rows` rows the oldest closed entries go first, then
    the oldest open ones, so a flood of made-up issuers cannot grow the table.
    Returns whether the refusal was captured (the page then says the administrator was told).
    """
    key = capturable(error)
    if key is None:
        return False
    claims = _inbox_claims(error.claims)
    now = datetime.now(UTC)
    table = PlatformInboxEntry.__table__
    insert = (postgresql.insert if db.session.get_bind().dialect.name == "postgresql"
              else sqlite.insert)(table)
    statement = insert.values(
        issuer=key.issuer, client_id=key.client_id, deployment_id=key.deployment_id,
        platform_id=error.platform.id if error.platform is not None else None,
        category=error.category, claims=claims or None, attempts=1, first_seen=now,
        last_seen=now, status=InboxStatus.OPEN.value,
    )
    changes: dict[str, Any] = {
        "attempts": table.c.attempts + 1,
        "last_seen": statement.excluded.last_seen,
        "category": statement.excluded.category,
        "platform_id": statement.excluded.platform_id,
        # Refused again after it was set up (the platform was since removed): open again.
        # A dismissed entry stays dismissed.
        "status": case((table.c.status == InboxStatus.RESOLVED.value, InboxStatus.OPEN.value),
                       else_=table.c.status),
    }
    if claims:  # a login carries no claims: keep those of an earlier launch
        changes["claims"] = statement.excluded.claims
    db.session.execute(statement.on_conflict_do_update(
        index_elements=["issuer", "client_id", "deployment_id"], set_=changes))
    _trim(max(1, max_rows))
    log.info("Inbox: refused %s from %s (client %s, deployment %s)", error.category,
             key.issuer, key.client_id, key.deployment_id or "-")
    return True


def _inbox_claims(claims: dict | None) -> dict[str, Any]:
    """The launch log's sanitized claims less everything about the person."""
    return {k: v for k, v in sanitize(claims).items() if k not in PERSONAL}


def _trim(max_rows: int) -> None:
    excess = db.session.scalar(select(func.count()).select_from(PlatformInboxEntry)) - max_rows
    if excess <= 0:
        return
    oldest = (
        select(PlatformInboxEntry.id)
        .order_by(case((PlatformInboxEntry.status == InboxStatus.OPEN, 1), else_=0),
                  PlatformInboxEntry.last_seen, PlatformInboxEntry.id)
        .limit(excess)
    )
    db.session.execute(delete(PlatformInboxEntry).where(
        PlatformInboxEntry.id.in_(oldest.scalar_subquery())))


# Reading


def open_entries(after: int | None = None) -> tuple[list[PlatformInboxEntry], int | None]:
    """A page of the entries waiting for an admin, latest seen first, after the entry `after`;
    and the next page's cursor (None on the last page)."""
    return _latest_seen(PlatformInboxEntry.status == InboxStatus.OPEN, after)


def closed_entries(after: int | None = None) -> tuple[list[PlatformInboxEntry], int | None]:
    """A page of the dismissed and resolved entries, as `open_entries` pages the open ones."""
    return _latest_seen(PlatformInboxEntry.status != InboxStatus.OPEN, after)


def _latest_seen(condition, after: int | None):
    """Pages by key on (last_seen, id). An entry seen again moves to the first page; a cursor
    that names no entry of the list gives the first page."""
    entry = PlatformInboxEntry
    return newest_first(select(entry).where(condition), entry, after, PAGE_SIZE,
                        by=entry.last_seen, cursor_where=condition)


def count_open() -> int:
    return db.session.scalar(select(func.count()).select_from(PlatformInboxEntry).where(
        PlatformInboxEntry.status == InboxStatus.OPEN)) or 0


def known_platform(entry: PlatformInboxEntry) -> LTIPlatform | None:
    """The registered platform of the entry's issuer and client ID, if there is one now."""
    return entry.platform or db.session.scalar(select(LTIPlatform).where(
        LTIPlatform.platform_id == entry.issuer, LTIPlatform.client_id == entry.client_id))


# What a new platform's form starts from


FAMILIES = {"moodle": "Moodle", "canvas": "Canvas", "brightspace": "Brightspace"}


def product_family(entry: PlatformInboxEntry) -> str | None:
    """moodle, canvas or brightspace: from the claims' tool_platform when a launch sent them,
    else from the issuer's host; None when neither tells."""
    tool_platform = (entry.claims or {}).get(TOOL_PLATFORM)
    code = tool_platform.get("product_family_code") if isinstance(tool_platform, dict) else None
    code = (code or "").lower() if isinstance(code, str) else ""
    if code in ("desire2learn", "brightspace", "d2l"):
        return "brightspace"
    if code in ("moodle", "canvas"):
        return code
    host = (urlsplit(entry.issuer).hostname or "").lower()
    if host in ("canvas.instructure.com", "canvas.test.instructure.com",
                "canvas.beta.instructure.com"):
        return "canvas"
    if host.endswith((".brightspace.com", ".desire2learn.com", ".d2l.com")):
        return "brightspace"
    if "moodle" in entry.issuer.lower():
        return "moodle"
    return None


def guessed_urls(issuer: str, family: str | None) -> dict[str, str]:
    """The login, token and keyset URLs a platform of this family uses, guessed from its issuer
    (shown to the admin to confirm, never used unseen)."""
    base = issuer.rstrip("/")
    if family == "moodle":
        return {"auth_login_url": f"{base}/mod/lti/auth.php",
                "auth_token_url": f"{base}/mod/lti/token.php",
                "key_set_url": f"{base}/mod/lti/certs.php"}
    if family == "canvas":
        return {"auth_login_url": "https://sso.canvaslms.com/api/lti/authorize_redirect",
                "auth_token_url": "https://sso.canvaslms.com/login/oauth2/token",
                "key_set_url": "https://sso.canvaslms.com/api/lti/security/jwks"}
    if family == "brightspace":
        host = urlsplit(issuer).netloc
        return {"auth_login_url": f"https://{host}/d2l/lti/authenticate",
                "auth_token_url": "https://auth.brightspace.com/core/connect/token",
                "key_set_url": f"https://{host}/d2l/.well-known/jwks"}
    return {}


def suggested_platform(entry: PlatformInboxEntry) -> dict[str, Any]:
    """The values a new platform's form is pre-filled with for this entry."""
    family = product_family(entry)
    host = urlsplit(entry.issuer).netloc or entry.issuer
    return {
        "name": platforms.free_name(f"{FAMILIES.get(family or '', 'LMS')} {host}"[:240]),
        "platform_id": entry.issuer,
        "client_id": entry.client_id,
        "deployment_ids": [entry.deployment_id] if entry.deployment_id else [],
        **guessed_urls(entry.issuer, family),
    }


# What an admin does with an entry (each flushed; the caller commits)


def create_platform(entry: PlatformInboxEntry, data: dict[str, Any],
                    allow_http: bool = False) -> LTIPlatform:
    """Register the platform the admin confirmed for this entry; the entries it answers leave
    the open list. Raises ValidationError naming the bad field."""
    platform = platforms.create_platform(data, allow_http)
    resolve_for(platform)
    db.session.flush()
    log.info("Inbox: entry #%s registered as platform %r", entry.id, platform.name)
    return platform


def add_deployment(entry: PlatformInboxEntry) -> LTIPlatform:
    """Allow the entry's deployment ID on its registered platform (flushed).

    Raises ValidationError when the platform is not registered or the entry names no deployment.
    """
    platform = known_platform(entry)
    if platform is None:
        raise ValidationError("platform", "no platform is registered for this issuer and "
                                          "client ID: create it first")
    if not entry.deployment_id:
        raise ValidationError("deployment_id", "the refused request named no deployment ID")
    if entry.deployment_id not in (platform.deployment_ids or []):
        platform.deployment_ids = [*(platform.deployment_ids or []), entry.deployment_id]
    resolve_for(platform)
    db.session.flush()
    log.info("Inbox: deployment %s added to platform %r", entry.deployment_id, platform.name)
    return platform


def dismiss(entry: PlatformInboxEntry) -> None:
    """Close the entry without a setup; a repeat only bumps its counter."""
    entry.status = InboxStatus.DISMISSED
    db.session.flush()


def resolve_for(platform: LTIPlatform) -> int:
    """Close the open entries a platform now answers: its issuer and client ID, with one of its
    deployments (or none named). Returns how many."""
    entries = db.session.scalars(select(PlatformInboxEntry).where(
        PlatformInboxEntry.status == InboxStatus.OPEN,
        PlatformInboxEntry.issuer == platform.platform_id,
        PlatformInboxEntry.client_id == platform.client_id))
    resolved = 0
    for entry in entries:
        if not entry.deployment_id or entry.deployment_id in (platform.deployment_ids or []):
            entry.status = InboxStatus.RESOLVED
            entry.platform_id = platform.id
            resolved += 1
    return resolved
