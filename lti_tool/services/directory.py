"""Read views for the admin: resource links, user mappings, users, course spaces."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.orm import joinedload

from ..errors import ValidationError
from ..extensions import db
from ..models import (
    Category,
    GlobalRole,
    LTIResourceLink,
    LTIUserMapping,
    RBACGroup,
    RBACMembership,
    User,
    rbac_group_category,
)
from .users import end_sessions

PER_PAGE = 50


def _like(q: str) -> str:
    return f"%{q.strip().lower()}%"


def resource_links(platform_id: int | None, q: str, page: int):
    """Links newest-launched first, filtered by platform and course or link text."""
    query = select(LTIResourceLink).options(
        joinedload(LTIResourceLink.platform), joinedload(LTIResourceLink.media))
    if platform_id:
        query = query.where(LTIResourceLink.platform_id == platform_id)
    if q.strip():
        like = _like(q)
        query = query.where(or_(
            func.lower(LTIResourceLink.context_title).like(like),
            func.lower(LTIResourceLink.context_id).like(like),
            func.lower(LTIResourceLink.resource_link_title).like(like),
        ))
    query = query.order_by(LTIResourceLink.last_launch.desc().nulls_last(),
                           LTIResourceLink.id.desc())
    return db.paginate(query, page=page, per_page=PER_PAGE, error_out=False)


def user_mappings(platform_id: int | None, q: str, page: int):
    query = select(LTIUserMapping).join(User).options(
        joinedload(LTIUserMapping.platform), joinedload(LTIUserMapping.user))
    if platform_id:
        query = query.where(LTIUserMapping.platform_id == platform_id)
    if q.strip():
        like = _like(q)
        query = query.where(or_(func.lower(LTIUserMapping.lti_user_id).like(like),
                                func.lower(LTIUserMapping.name).like(like),
                                func.lower(User.username).like(like)))
    query = query.order_by(LTIUserMapping.last_login.desc().nulls_last(),
                           LTIUserMapping.id.desc())
    return db.paginate(query, page=page, per_page=PER_PAGE, error_out=False)


def users(q: str, page: int):
    query = select(User)
    if q.strip():
        like = _like(q)
        query = query.where(or_(func.lower(User.username).like(like),
                                func.lower(User.name).like(like),
                                func.lower(User.email).like(like)))
    return db.paginate(query.order_by(User.username, User.id), page=page, per_page=PER_PAGE,
                       error_out=False)


def set_user_access(user: User, actor: User, global_role: GlobalRole, active: bool) -> User:
    """Change a user's global role and active flag (flushed); no one locks themselves out."""
    if user.id == actor.id and (global_role is not GlobalRole.ADMIN or not active):
        raise ValidationError("global_role", "you cannot remove your own admin access")
    ends_sessions = global_role.rank < user.global_role.rank or (user.active and not active)
    user.global_role, user.active = global_role, active
    if ends_sessions:
        end_sessions(user)
    db.session.flush()
    return user


def categories(q: str, page: int):
    """Course spaces and categories by title; `member_counts` gives their members."""
    query = select(Category)
    if q.strip():
        query = query.where(func.lower(Category.title).like(_like(q)))
    return db.paginate(query.order_by(Category.title, Category.id), page=page,
                       per_page=PER_PAGE, error_out=False)


def member_counts(category_ids: list[int]) -> dict[int, int]:
    """How many distinct people each category's groups hold, in one query."""
    rows = db.session.execute(
        select(rbac_group_category.c.category_id,
               func.count(func.distinct(RBACMembership.user_id)))
        .join(RBACMembership,
              RBACMembership.rbac_group_id == rbac_group_category.c.rbac_group_id)
        .where(rbac_group_category.c.category_id.in_(category_ids))
        .group_by(rbac_group_category.c.category_id)
    )
    return dict(rows.all())


def category_groups(category: Category) -> list[tuple[RBACGroup, list[RBACMembership]]]:
    groups = db.session.scalars(
        select(RBACGroup).join(rbac_group_category)
        .where(rbac_group_category.c.category_id == category.id).order_by(RBACGroup.id)
    ).all()
    return [(group, list(db.session.scalars(
        select(RBACMembership).where(RBACMembership.rbac_group_id == group.id)
        .order_by(RBACMembership.role.desc(), RBACMembership.id)
    ))) for group in groups]
