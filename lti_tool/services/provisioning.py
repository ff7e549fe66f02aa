"""Provisioning on a successful launch: user and mapping, course category and group, resource link.

Safe under concurrency without locks: every row that two first launches could both create is
written with INSERT … ON CONFLICT DO NOTHING against its unique constraint, then read back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update

from ..errors import LaunchError
from ..extensions import db
from ..models import (
    Category,
    GroupRole,
    LTIPlatform,
    LTIResourceLink,
    LTIRoleMapping,
    LTIUserMapping,
    Media,
    MembershipSource,
    RBACGroup,
    RBACMembership,
    User,
    rbac_group_category,
)
from . import claims as c
from .accounts import Profile, create_user, dialect_insert, text_claim, user_changes
from .roles import MappedRoles, map_roles

log = logging.getLogger(__name__)

UNKNOWN: Any = object()  # a membership not looked up yet, a role not known


@dataclass
class Provisioned:
    user: User
    roles: MappedRoles
    category: Category | None
    group: RBACGroup | None
    resource_link_id: int | None
    media_id: int | None
    user_created: bool
    media_missing: bool = False  # the link's custom media_id names media that is gone
    # The user's role over the course's category (access.category_role) as the launch left
    # it, when the launch knows it: the course's group is the only one granting the category.
    course_role: Any = UNKNOWN


def provision_launch(data: dict[str, Any], platform: LTIPlatform,
                     mappings: list[LTIRoleMapping]) -> Provisioned:
    """Create or update everything a validated launch implies, in the caller's transaction.

    `mappings`: the platform's role mappings, as the launch read them with the platform.
    """
    now = datetime.now(UTC)
    roles = launch_roles(data, platform, mappings)
    context = data.get(c.CONTEXT) if isinstance(data.get(c.CONTEXT), dict) else {}
    context_id = str(context["id"])[:255] if context.get("id") else None
    user, created, course = _user(platform, data, roles, now, context_id)
    category, group, membership, sole_grant = _course(platform, context, user.id, course)
    course_role = UNKNOWN
    if group is not None:
        role = _membership(platform, group, user, roles.group_role, membership)
        if sole_grant:
            course_role = role
    link_id = media_id = None
    missing = False
    if data.get(c.MESSAGE_TYPE) == c.RESOURCE_LINK_REQUEST:
        link_id, media_id, missing = _resource_link(platform, data, category, group, now)
    return Provisioned(user, roles, category, group, link_id, media_id, created, missing,
                       course_role)


def launch_roles(data: dict[str, Any] | None, platform: LTIPlatform | None,
                 mappings: list[LTIRoleMapping] | None = None) -> MappedRoles:
    """The roles of a launch's claims under the platform's role mappings and the defaults.

    The one mapping used both to provision and to decide who sees a failed launch's fix.
    `mappings`: the platform's, when already loaded.
    """
    values = (data or {}).get(c.ROLES)
    if mappings is None:
        mappings = [] if platform is None else db.session.scalars(
            select(LTIRoleMapping).where(LTIRoleMapping.platform_id == platform.id)
        ).all()
    return map_roles(values if isinstance(values, list) else [], mappings)


# Users


# The statements of every returning launch, built once (SQLAlchemy keeps their cache keys);
# the user's query also reads the course (_USER_AND_COURSE, below).
_MAPPING_SEEN = (  # on the table: the ORM's bulk UPDATE path costs more than the statement
    update(LTIUserMapping.__table__)
    .where(LTIUserMapping.__table__.c.id == bindparam("mapping_id"))
    .values(last_login=bindparam("now"),
            **{k: bindparam(f"new_{k}") for k in ("email", "given_name", "family_name", "name")})
)


def _user(
    platform: LTIPlatform, data: dict[str, Any], roles: MappedRoles, now: datetime,
    context_id: str | None,
) -> tuple[User, bool, tuple | None]:
    """The launch's user, made if need be, whether made now, and for a known user the course
    as `_find_course` reads it, in the same query (None: not read)."""
    sub = data["sub"]
    profile = Profile.from_claims(data)
    row = db.session.execute(_USER_AND_COURSE, {"platform_id": platform.id, "sub": sub,
                                                "context_id": context_id}).first()
    if row is not None:
        mapping, user = row[0], row[1]
        db.session.execute(_MAPPING_SEEN, {
            "mapping_id": mapping.id, "now": now,
            **{f"new_{k}": v for k, v in profile.cached().items()}})
        for key, value in user_changes(platform, user, profile, roles).items():
            setattr(user, key, value)
        return user, False, tuple(row[2:])
    if not platform.auto_create_users:
        raise LaunchError(
            "user_creation_disabled",
            f"No local user is mapped to sub {sub!r} and automatic user creation is off.",
            sub=sub,
        )
    user_id, created = create_user(platform, sub, profile, roles, now, last_login=now)
    return db.session.get(User, user_id), created, None


# Courses


def _course(
    platform: LTIPlatform, context: dict[str, Any], user_id: int, found: tuple | None = None,
) -> tuple[Category | None, RBACGroup | None, RBACMembership | None, bool]:
    """The course's category and group, made if need be, the user's membership of the
    group (None: not a member; UNKNOWN: not looked up), and whether the group is the only
    one granting the category. `found`: what the user's query read of them."""
    if not context.get("id"):
        return None, None, None, False
    context_id = str(context["id"])[:255]
    title = (text_claim(context.get("title")) or text_claim(context.get("label"))
             or f"Course {context_id}")
    if found is not None and found[1] is not None:
        category, group, membership, sole_grant = *found[:3], bool(found[3])
    else:
        category, group, membership, sole_grant = _find_course(platform, context_id, user_id)
    if category is None or group is None:
        if not platform.auto_create_categories:
            return category, group, UNKNOWN, False
        category, group = _create_course(platform, context_id, title)
        membership, sole_grant = UNKNOWN, False
    if category.title != title:
        category.title = title
    if group.name != title:
        group.name = title
    return category, group, membership, sole_grant


def _sole_grant():
    """Whether the row's group grants the row's category and no other group does."""
    links = rbac_group_category.c
    return (
        select(func.count()).where(links.category_id == Category.id,
                                   links.rbac_group_id != RBACGroup.id)
        .scalar_subquery() == 0
    ) & (
        select(links.rbac_group_id).where(links.category_id == Category.id,
                                          links.rbac_group_id == RBACGroup.id).exists()
    )


def _with_course(query, user_id):
    """`query` (which selects from Category) with the course's group, the membership of
    `user_id` in it, and `_sole_grant`: what `_find_course` reads."""
    return (
        query.add_columns(RBACGroup, RBACMembership, _sole_grant().label("sole_grant"))
        .outerjoin(RBACGroup, (RBACGroup.platform_id == Category.platform_id)
                   & (RBACGroup.lti_context_id == Category.lti_context_id))
        .outerjoin(RBACMembership, (RBACMembership.rbac_group_id == RBACGroup.id)
                   & (RBACMembership.user_id == user_id))
    )


_COURSE = _with_course(select(Category), bindparam("user_id")).where(
    Category.platform_id == bindparam("platform_id"),
    Category.lti_context_id == bindparam("context_id"))

_USER_AND_COURSE = _with_course(  # a returning user's launch: mapping and user, and the course
    select(LTIUserMapping, User, Category)
    .join(User, User.id == LTIUserMapping.user_id)
    .outerjoin(Category, (Category.platform_id == LTIUserMapping.platform_id)
               & (Category.lti_context_id == bindparam("context_id"))),
    User.id,
).where(LTIUserMapping.platform_id == bindparam("platform_id"),
        LTIUserMapping.lti_user_id == bindparam("sub"))


def _find_course(
    platform: LTIPlatform, context_id: str, user_id: int | None = None
) -> tuple[Category | None, RBACGroup | None, RBACMembership | None, bool]:
    """The course's category and group, the membership of `user_id`, and whether the group
    alone grants the category, in one query (any may be missing; the membership is UNKNOWN
    when the group is)."""
    row = db.session.execute(_COURSE, {"platform_id": platform.id, "context_id": context_id,
                                       "user_id": user_id}).first()
    if row is not None and row[1] is not None:
        return row[0], row[1], row[2], bool(row[3])
    group = db.session.scalar(
        select(RBACGroup).where(
            RBACGroup.platform_id == platform.id, RBACGroup.lti_context_id == context_id
        )
    )
    return (row[0] if row else None), group, UNKNOWN, False


def _create_course(platform: LTIPlatform, context_id: str, title: str):
    now = datetime.now(UTC)
    for model, values in (
        (Category, {"title": title, "is_lms_course": True}),
        (RBACGroup, {"name": title}),
    ):
        db.session.execute(
            dialect_insert(model)
            .values(platform_id=platform.id, lti_context_id=context_id, created_at=now, **values)
            .on_conflict_do_nothing(index_elements=["platform_id", "lti_context_id"])
        )
    category, group, _, _ = _find_course(platform, context_id)
    db.session.execute(
        dialect_insert(rbac_group_category)
        .values(rbac_group_id=group.id, category_id=category.id)
        .on_conflict_do_nothing(index_elements=["rbac_group_id", "category_id"])
    )
    return category, group


def _membership(
    platform: LTIPlatform, group: RBACGroup, user: User, role: GroupRole,
    membership: RBACMembership | None = UNKNOWN,
) -> GroupRole | Any:
    """Join the user to the course group; with auto_sync_roles the role follows the LMS.

    A membership a roster sync made becomes the launch's: the role a launch sets is the one a
    later sync will not lower (Moodle's NRPS calls a non-editing teacher a Learner).
    `membership`: the user's, when already looked up (None: there is none).
    Returns the user's role in the group now (UNKNOWN: a concurrent launch joined them first).
    """
    if membership is UNKNOWN:
        membership = db.session.scalar(
            select(RBACMembership).where(
                RBACMembership.rbac_group_id == group.id, RBACMembership.user_id == user.id
            )
        )
    if membership is None:
        joined = db.session.execute(
            dialect_insert(RBACMembership)
            .values(rbac_group_id=group.id, user_id=user.id, role=role,
                    source=MembershipSource.LAUNCH, created_at=datetime.now(UTC))
            .on_conflict_do_nothing(index_elements=["rbac_group_id", "user_id"])
            .returning(RBACMembership.role)
        ).scalar()
        return UNKNOWN if joined is None else joined
    if platform.auto_sync_roles and membership.role is not role:
        membership.role = role
    if membership.source is MembershipSource.ROSTER:
        membership.source = MembershipSource.LAUNCH
    return membership.role


# Resource links


def _link_counted(*columns: str):
    """The UPDATE counting a launch on its link and setting `columns`, built once."""
    table = LTIResourceLink.__table__
    return (
        update(table)
        .where(*(table.c[name] == bindparam(f"key_{name}")
                 for name in ("platform_id", "context_id", "resource_link_id")))
        .values(launch_count=table.c.launch_count + 1,
                **{name: bindparam(f"new_{name}") for name in columns})
        .returning(table.c.id, table.c.media_id)
    )


_LINK_COLUMNS = ("context_title", "context_label", "resource_link_title", "category_id",
                 "rbac_group_id", "last_launch")
_LINK_COUNTED = _link_counted(*_LINK_COLUMNS)
_LINK_COUNTED_WITH_MEDIA = _link_counted(*_LINK_COLUMNS, "media_id")


def _resource_link(
    platform: LTIPlatform,
    data: dict[str, Any],
    category: Category | None,
    group: RBACGroup | None,
    now: datetime,
) -> tuple[int, int | None, bool]:
    """Count the launch on the link in one atomic statement, creating the link the first time.

    Returns (link id, media id, whether the link names media that no longer exists). The
    UPDATE serves every launch but a link's first; the first inserts, and a concurrent first
    launch that loses the insert race counts itself in the conflict clause: no launch is lost.
    """
    context = data.get(c.CONTEXT) if isinstance(data.get(c.CONTEXT), dict) else {}
    link = data[c.RESOURCE_LINK]
    key = {
        "platform_id": platform.id,
        "context_id": str(context.get("id") or "")[:255],
        "resource_link_id": str(link["id"])[:255],
    }
    values = {
        "context_title": text_claim(context.get("title")),
        "context_label": text_claim(context.get("label"), 100),
        "resource_link_title": text_claim(link.get("title")),
        "category_id": category.id if category else None,
        "rbac_group_id": group.id if group else None,
        "last_launch": now,
    }
    requested = _requested_media_id(data.get(c.CUSTOM))
    media_id = requested if requested is not None and _media_exists(requested) else None
    if media_id is not None:
        values["media_id"] = media_id
    table = LTIResourceLink.__table__
    row = db.session.execute(
        _LINK_COUNTED_WITH_MEDIA if media_id is not None else _LINK_COUNTED,
        {f"key_{k}": v for k, v in key.items()} | {f"new_{k}": v for k, v in values.items()},
    ).first()
    if row is None:
        stmt = dialect_insert(table).values(created_at=now, launch_count=1, **key, **values)
        row = db.session.execute(
            stmt.on_conflict_do_update(
                index_elements=list(key),
                set_={**{k: stmt.excluded[k] for k in values},
                      "launch_count": table.c.launch_count + 1},
            ).returning(table.c.id, table.c.media_id)
        ).one()
    return row[0], row[1], requested is not None and media_id is None


def _requested_media_id(custom: Any) -> int | None:
    """The media a deep-linked item points at: its custom parameter media_id."""
    if not isinstance(custom, dict):
        return None
    try:
        return int(custom.get("media_id"))
    except (TypeError, ValueError):
        return None


def _media_exists(media_id: int) -> bool:
    return bool(
        db.session.scalar(select(func.count()).select_from(Media).where(Media.id == media_id))
    )
