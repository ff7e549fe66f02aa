"""Who may see what: group roles on categories, media visibility, global roles."""

from sqlalchemy import select

from ..extensions import db
from ..models import (
    Category,
    GlobalRole,
    GroupRole,
    Media,
    RBACMembership,
    User,
    Visibility,
    rbac_group_category,
)
from .paging import newest_first

PAGE_SIZE = 50  # items on a page of a course's or a user's media


def category_role(user: User, category: Category) -> GroupRole | None:
    """The user's strongest group role over the groups that grant this category."""
    roles = db.session.scalars(
        select(RBACMembership.role)
        .join(rbac_group_category,
              rbac_group_category.c.rbac_group_id == RBACMembership.rbac_group_id)
        .where(rbac_group_category.c.category_id == category.id,
               RBACMembership.user_id == user.id)
    ).all()
    return max(roles, key=lambda r: r.rank, default=None)


def can_view_category(user: User, category: Category) -> bool:
    return user.has_global_role(GlobalRole.EDITOR) or category_role(user, category) is not None


def can_view_media(user: User, media: Media) -> bool:
    """Owner and editors always; public media anyone signed in; members media the category's
    group; private media nobody else."""
    if media.owner_id == user.id or user.has_global_role(GlobalRole.EDITOR):
        return True
    if media.visibility is Visibility.PUBLIC:
        return True
    if media.visibility is Visibility.MEMBERS and media.category is not None:
        return category_role(user, media.category) is not None
    return False


def category_media(category: Category, after: int | None = None) -> tuple[list[Media], int | None]:
    """A page of a category's media, newest first, and the next page's cursor (private items
    only appear on their owner's page)."""
    query = select(Media).where(
        Media.category_id == category.id, Media.visibility != Visibility.PRIVATE)
    return newest_first(query, Media, after, PAGE_SIZE)


def own_media(user: User, after: int | None = None) -> tuple[list[Media], int | None]:
    """A page of the user's own media, newest first, and the next page's cursor."""
    return newest_first(select(Media).where(Media.owner_id == user.id), Media, after, PAGE_SIZE)


def can_upload_to(user: User, category: Category) -> bool:
    """Course contributors and managers add media to it; editors and above anywhere."""
    if user.has_global_role(GlobalRole.EDITOR):
        return True
    role = category_role(user, category)
    return role is not None and role.rank >= GroupRole.CONTRIBUTOR.rank


def upload_categories(user: User) -> list[Category]:
    """The categories this user may add media to, by title."""
    query = select(Category).order_by(Category.title, Category.id)
    if not user.has_global_role(GlobalRole.EDITOR):
        query = query.join(rbac_group_category, rbac_group_category.c.category_id == Category.id)
        query = query.join(
            RBACMembership, RBACMembership.rbac_group_id == rbac_group_category.c.rbac_group_id
        ).where(
            RBACMembership.user_id == user.id,
            RBACMembership.role.in_([GroupRole.CONTRIBUTOR, GroupRole.MANAGER]),
        ).distinct()
    return list(db.session.scalars(query))


def can_manage_media(user: User, media: Media) -> bool:
    """Edit and delete: the owner, editors and above, and managers of its course."""
    if media.owner_id == user.id or user.has_global_role(GlobalRole.EDITOR):
        return True
    return media.category is not None and category_role(user, media.category) is GroupRole.MANAGER
