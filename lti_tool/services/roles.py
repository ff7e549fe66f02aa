"""LTI roles: parsing every form platforms send, and mapping them to global and group roles."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..models import GlobalRole, GroupRole, LTIRoleMapping

LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
CONTEXT, INSTITUTION, SYSTEM, UNKNOWN = "context", "institution", "system", "unknown"

# urn:lti:… forms of LTI 1.1, still sent by some platforms.
URN_SCOPES = {
    "urn:lti:role:ims/lis/": CONTEXT,
    "urn:lti:instrole:ims/lis/": INSTITUTION,
    "urn:lti:sysrole:ims/lis/": SYSTEM,
}
URI_SCOPES = {
    f"{LIS}membership": CONTEXT,
    f"{LIS}institution/person": INSTITUTION,
    f"{LIS}system/person": SYSTEM,
    # Deprecated person vocabulary (Moodle's NRPS uses it for administrators).
    f"{LIS}person": INSTITUTION,
}


@dataclass(frozen=True)
class Role:
    """One role of a launch: its scope (context, institution, system or unknown) and name."""

    scope: str
    name: str

    @property
    def uri(self) -> str:
        if self.scope == CONTEXT:
            return f"{LIS}membership#{self.name}"
        if self.scope in (INSTITUTION, SYSTEM):
            return f"{LIS}{self.scope}/person#{self.name}"
        return self.name


def parse_role(value: str) -> Role | None:
    """Read one role in any form: full URI, sub-role URI, short name, deprecated forms.

    A sub-role (`membership/Instructor#TeachingAssistant`) counts as the sub-role itself.
    Returns None for an empty value; an unrecognised value is kept with the scope `unknown`.
    """
    value = (value or "").strip()
    if not value:
        return None
    for prefix, scope in URN_SCOPES.items():
        if value.startswith(prefix):
            return Role(scope, value.removeprefix(prefix).rsplit("/", 1)[-1])
    if "#" in value:
        base, name = value.rsplit("#", 1)
        for uri, scope in URI_SCOPES.items():
            if base == uri or (scope == CONTEXT and base.startswith(uri + "/")):
                return Role(scope, name)
        return Role(UNKNOWN, value)
    if "/" not in value and ":" not in value:
        return Role(CONTEXT, value)
    return Role(UNKNOWN, value)


def parse_roles(values: Iterable[str] | None) -> list[Role]:
    """Parse a roles claim; empty entries are dropped, duplicates kept once, order kept."""
    roles: dict[Role, None] = {}
    for value in values or []:
        if isinstance(value, str) and (role := parse_role(value)) is not None:
            roles.setdefault(role, None)
    return list(roles)


# The documented defaults, used where a platform has no LTIRoleMapping for a role.
DEFAULTS: dict[Role, tuple[GlobalRole | None, GroupRole | None]] = {
    Role(CONTEXT, "Instructor"): (GlobalRole.ADVANCED_USER, GroupRole.MANAGER),
    Role(INSTITUTION, "Faculty"): (GlobalRole.ADVANCED_USER, GroupRole.MANAGER),
    Role(INSTITUTION, "Instructor"): (GlobalRole.ADVANCED_USER, GroupRole.MANAGER),
    Role(CONTEXT, "TeachingAssistant"): (GlobalRole.USER, GroupRole.CONTRIBUTOR),
    Role(CONTEXT, "ContentDeveloper"): (GlobalRole.USER, GroupRole.CONTRIBUTOR),
    Role(CONTEXT, "Administrator"): (GlobalRole.USER, GroupRole.MANAGER),
    Role(INSTITUTION, "Administrator"): (GlobalRole.MANAGER, GroupRole.MANAGER),
    Role(SYSTEM, "Administrator"): (GlobalRole.MANAGER, GroupRole.MANAGER),
}
BASELINE = (GlobalRole.USER, GroupRole.MEMBER)
TEACHING_ROLES = {
    Role(CONTEXT, "Instructor"), Role(CONTEXT, "TeachingAssistant"),
    Role(CONTEXT, "ContentDeveloper"), Role(CONTEXT, "Administrator"),
    Role(INSTITUTION, "Administrator"), Role(SYSTEM, "Administrator"),
    Role(INSTITUTION, "Faculty"), Role(INSTITUTION, "Instructor"),
}


@dataclass(frozen=True)
class MappedRoles:
    global_role: GlobalRole
    group_role: GroupRole
    roles: tuple[Role, ...]
    unknown: tuple[str, ...]

    @property
    def is_teacher(self) -> bool:
        """Instructor-type roles, or anything mapped to contributor or manager in the course."""
        return bool(TEACHING_ROLES & set(self.roles)) or self.group_role.rank >= 1


def map_roles(values: Iterable[str] | None, mappings: Iterable[LTIRoleMapping] = ()) -> MappedRoles:
    """The global and group role a launch with these roles gets.

    The platform's LTIRoleMapping rows win over the defaults, matched whichever way either side
    is written (full URI or short name); an empty value in a row adds nothing at that level.
    Everyone starts at user / member and the highest value over all roles wins.
    """
    table = dict(DEFAULTS)
    for mapping in mappings:
        role = parse_role(mapping.lti_role)
        if role is not None:
            table[role] = (mapping.global_role, mapping.group_role)
    global_role, group_role = BASELINE
    roles = parse_roles(values)
    for role in roles:
        mapped_global, mapped_group = table.get(role, (None, None))
        if mapped_global is not None and mapped_global.rank > global_role.rank:
            global_role = mapped_global
        if mapped_group is not None and mapped_group.rank > group_role.rank:
            group_role = mapped_group
    unknown = tuple(r.name for r in roles if r not in table and r.scope == UNKNOWN)
    return MappedRoles(global_role, group_role, tuple(roles), unknown)
