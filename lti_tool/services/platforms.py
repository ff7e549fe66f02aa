"""Registering LMS platforms: validation, creation, listing and removal."""

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select

from ..errors import ValidationError
from ..extensions import db
from ..models import LTILaunchLog, LTIPlatform, LTIResourceLink, LTIRoleMapping, LTIUserMapping

log = logging.getLogger(__name__)

URL_FIELDS = ("platform_id", "auth_login_url", "auth_token_url", "key_set_url", "auth_audience")
REQUIRED_FIELDS = ("name", "platform_id", "client_id", "auth_login_url", "auth_token_url",
                   "key_set_url")
SWITCHES = ("enable_nrps", "enable_deep_linking", "auto_create_categories", "auto_create_users",
            "auto_sync_roles", "remove_from_groups_on_unenroll", "active")
LOOPBACK_NAMES = {"localhost"}


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(value: str, allow_http: bool = False) -> str:
    """Return `value` if it is an absolute https URL (http only on loopback, or anywhere with
    `allow_http`: development mode), else raise ValueError.

    A path is allowed (a Moodle site may live at https://lms.example.edu/moodle).
    """
    value = (value or "").strip()
    if any(c.isspace() for c in value):
        raise ValueError(f"{value!r} contains spaces")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"{value!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"{value!r} is not an absolute http(s) URL")
    if parts.scheme == "http" and not allow_http and not is_loopback_host(host):
        raise ValueError(f"{value!r} must use https (http is only accepted on loopback hosts)")
    return value


def clean_deployment_ids(values: Iterable[str]) -> list[str]:
    """Strip, drop empties and duplicates, keep the order given."""
    seen: dict[str, None] = {}
    for value in values:
        value = (value or "").strip()
        if value:
            seen.setdefault(value, None)
    return list(seen)


def _validated(
    data: Mapping[str, Any], platform: LTIPlatform | None, allow_http: bool = False
) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for field in REQUIRED_FIELDS:
        value = (data.get(field) or "").strip()
        if not value:
            raise ValidationError(field, "this value is required")
        clean[field] = value
    clean["auth_audience"] = (data.get("auth_audience") or "").strip() or None
    for field in URL_FIELDS:
        if clean[field] is not None:
            try:
                clean[field] = check_url(clean[field], allow_http)
            except ValueError as e:
                raise ValidationError(field, str(e)) from None
    issuer = urlsplit(clean["platform_id"])
    if issuer.query or issuer.fragment:
        raise ValidationError("platform_id", "an issuer has no query string or fragment")
    clean["deployment_ids"] = clean_deployment_ids(data.get("deployment_ids") or [])
    for field in SWITCHES:
        if field in data and data[field] is not None:
            clean[field] = bool(data[field])

    others = select(LTIPlatform.id)
    if platform is not None and platform.id is not None:
        others = others.where(LTIPlatform.id != platform.id)
    if db.session.scalar(others.where(LTIPlatform.name == clean["name"])):
        raise ValidationError("name", f"a platform named {clean['name']!r} already exists")
    if db.session.scalar(
        others.where(
            LTIPlatform.platform_id == clean["platform_id"],
            LTIPlatform.client_id == clean["client_id"],
        )
    ):
        raise ValidationError(
            "client_id",
            f"issuer {clean['platform_id']} already has a platform with client ID "
            f"{clean['client_id']!r}",
        )
    return clean


def create_platform(data: Mapping[str, Any], allow_http: bool = False) -> LTIPlatform:
    """Validate and add a platform registration; raises ValidationError naming the bad field.

    `allow_http` (development mode) accepts plain-http URLs on any host.
    """
    platform = LTIPlatform(**_validated(data, None, allow_http))
    db.session.add(platform)
    db.session.flush()
    log.info("Registered platform %r (issuer %s)", platform.name, platform.platform_id)
    return platform


def update_platform(
    platform: LTIPlatform, data: Mapping[str, Any], allow_http: bool = False
) -> LTIPlatform:
    """Validate and apply changes to a registration (flushed); raises ValidationError."""
    for field, value in _validated(data, platform, allow_http).items():
        setattr(platform, field, value)
    if platform.active:  # an admin who switches on a waiting registration approves it
        platform.registration_pending = False
    db.session.flush()
    log.info("Updated platform %r", platform.name)
    return platform


def moodle_urls(site: str, allow_http: bool = False) -> dict[str, str]:
    """The issuer and the three endpoint URLs of a Moodle site, from its address alone."""
    site = check_url(site, allow_http).rstrip("/")
    return {
        "platform_id": site,
        "key_set_url": f"{site}/mod/lti/certs.php",
        "auth_token_url": f"{site}/mod/lti/token.php",
        "auth_login_url": f"{site}/mod/lti/auth.php",
    }


def fill_from_moodle_site(data: Mapping[str, Any], site: str,
                          allow_http: bool = False) -> dict[str, Any]:
    """`data` with its empty issuer and endpoint URLs filled from a Moodle site's address
    (values given keep precedence). Raises ValidationError on `moodle_site`."""
    try:
        filled = moodle_urls(site, allow_http)
    except ValueError as e:
        raise ValidationError("moodle_site", str(e)) from None
    return dict(data) | {k: v for k, v in filled.items()
                         if not str(data.get(k) or "").strip()}


def set_active(platform: LTIPlatform, active: bool) -> LTIPlatform:
    """Switch a platform on or off (flushed): a switched-off platform's launches are refused.

    Switching on a dynamic registration that waits for approval approves it.
    """
    platform.active = active
    if active:
        platform.registration_pending = False
    db.session.flush()
    return platform


def search_platforms(q: str = "", active: bool | None = None, page: int = 1,
                     per_page: int = 25):
    """A page of platforms by name, matching `q` in name, issuer or client ID."""
    query = select(LTIPlatform)
    if q.strip():
        pattern = f"%{q.strip().lower()}%"
        query = query.where(
            func.lower(LTIPlatform.name).like(pattern)
            | func.lower(LTIPlatform.platform_id).like(pattern)
            | func.lower(LTIPlatform.client_id).like(pattern)
        )
    if active is not None:
        query = query.where(LTIPlatform.active.is_(active))
    return db.paginate(query.order_by(LTIPlatform.name, LTIPlatform.id), page=page,
                       per_page=per_page, error_out=False)


def list_platforms() -> list[LTIPlatform]:
    """Every platform, by name."""
    return list(db.session.scalars(select(LTIPlatform).order_by(LTIPlatform.name, LTIPlatform.id)))


def get_platform_by_name(name: str) -> LTIPlatform:
    platform = db.session.scalar(select(LTIPlatform).where(LTIPlatform.name == name))
    if platform is None:
        raise ValidationError("name", f"no platform named {name!r}")
    return platform


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def is_safe_return_url(url: str | None, platform: LTIPlatform | None) -> bool:
    """A link back to the LMS is shown only if it is https (or loopback) on the platform's host."""
    if not url or platform is None:
        return False
    try:
        check_url(url)
    except ValueError:
        return False
    return urlsplit(url).hostname == urlsplit(platform.platform_id).hostname


def frame_origins(platform: LTIPlatform | None = None) -> list[str]:
    """Origins allowed to frame the tool's LTI pages: the platform's, or every active one's."""
    if platform is not None:
        found = [platform]
    else:
        found = db.session.scalars(select(LTIPlatform).where(LTIPlatform.active.is_(True)))
    origins: dict[str, None] = {}
    for p in found:
        for url in (p.platform_id, p.auth_login_url):
            origins.setdefault(origin(url), None)
    return list(origins)


def dependants(platform: LTIPlatform) -> dict[str, int]:
    """How many rows are deleted together with this platform, by kind."""
    counts = {}
    for label, model in (
        ("resource links", LTIResourceLink),
        ("user mappings", LTIUserMapping),
        ("role mappings", LTIRoleMapping),
        ("launch logs", LTILaunchLog),
    ):
        counts[label] = db.session.scalar(
            select(func.count()).select_from(model).where(model.platform_id == platform.id)
        )
    return counts


def remove_platform(platform: LTIPlatform) -> dict[str, int]:
    """Delete a platform; its links, user and role mappings and logs go with it (ON DELETE).

    Returns what went with it, as `dependants` counts it.
    """
    counts = dependants(platform)
    db.session.delete(platform)
    db.session.flush()
    log.info("Removed platform %r (issuer %s)", platform.name, platform.platform_id)
    return counts


def free_name(base: str) -> str:
    """`base`, or `base (2)`, `base (3)`…: the first name no platform has yet."""
    taken = set(db.session.scalars(
        select(LTIPlatform.name).where(LTIPlatform.name.startswith(base, autoescape=True))))
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base} ({n})"
    return name
