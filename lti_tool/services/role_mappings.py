"""Per-platform role mappings, and the simulator that shows what a launch would get."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from ..errors import ValidationError
from ..extensions import db
from ..models import GlobalRole, GroupRole, LTILaunchLog, LTIPlatform, LTIRoleMapping
from . import claims as c
from .roles import DEFAULTS, MappedRoles, map_roles, parse_role


def mappings_of(platform: LTIPlatform) -> list[LTIRoleMapping]:
    return list(db.session.scalars(
        select(LTIRoleMapping).where(LTIRoleMapping.platform_id == platform.id)
        .order_by(LTIRoleMapping.lti_role, LTIRoleMapping.id)
    ))


def save_mapping(platform: LTIPlatform, lti_role: str, global_role: GlobalRole | None,
                 group_role: GroupRole | None,
                 mapping: LTIRoleMapping | None = None) -> LTIRoleMapping:
    """Create or change a mapping (flushed). A role written as URI or short name is the same
    role: a second mapping for it is refused. Raises ValidationError on `lti_role`."""
    lti_role = (lti_role or "").strip()
    role = parse_role(lti_role)
    if role is None:
        raise ValidationError("lti_role", "enter an LTI role URI or short name")
    for other in mappings_of(platform):
        if other is not mapping and parse_role(other.lti_role) == role:
            raise ValidationError("lti_role", f"this role is already mapped (as {other.lti_role})")
    if mapping is None:
        mapping = LTIRoleMapping(platform_id=platform.id)
        db.session.add(mapping)
    mapping.lti_role, mapping.global_role, mapping.group_role = lti_role, global_role, group_role
    db.session.flush()
    return mapping


def delete_mapping(mapping: LTIRoleMapping) -> None:
    """Remove a mapping (flushed); the role's defaults apply again."""
    db.session.delete(mapping)
    db.session.flush()


def find_mapping(platform: LTIPlatform, lti_role: str) -> LTIRoleMapping:
    """The platform's mapping of this role, written as URI or short name; ValidationError on
    `lti_role` if there is none."""
    role = parse_role((lti_role or "").strip())
    for mapping in mappings_of(platform):
        if role is not None and parse_role(mapping.lti_role) == role:
            return mapping
    raise ValidationError("lti_role", f"{platform.name} has no mapping for {lti_role!r}")


def default_table() -> list[tuple[str, GlobalRole | None, GroupRole | None]]:
    """The defaults that apply where a platform has no mapping, for the page."""
    return [(role.uri, g, r) for role, (g, r) in DEFAULTS.items()]


def split_roles(text: str) -> list[str]:
    return [part.strip() for part in (text or "").replace(",", "\n").splitlines()
            if part.strip()]


def recent_launch_roles(platform: LTIPlatform, limit: int = 20) -> list[tuple[int, list[str]]]:
    """Recent logged launches of the platform with their roles claim, newest first."""
    logs = db.session.scalars(
        select(LTILaunchLog).where(LTILaunchLog.platform_id == platform.id)
        .order_by(LTILaunchLog.created_at.desc(), LTILaunchLog.id.desc()).limit(limit)
    )
    return [(log.id, list((log.claims or {}).get(c.ROLES) or [])) for log in logs]


def simulate(roles: Iterable[str], mappings: list[LTIRoleMapping],
             edited: LTIRoleMapping | None = None) -> MappedRoles:
    """Exactly what a launch with these roles gets, optionally with an unsaved mapping in place
    of the stored one it edits (or in addition, if new)."""
    if edited is not None:
        mappings = [m for m in mappings if m.id is None or m.id != edited.id] + [edited]
    return map_roles(list(roles), mappings)
