"""Who may see what: group roles on categories, media visibility, global roles."""

from flask import g
from sqlalchemy import bindparam, func, literal, select, tuple_

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
from .paging import MAX_ID, newest_first, page_of

PAGE_SIZE = 24  # items on a page of a course's or a user's media: 2, 3 or 4 cards a row
SORTS = ("newest", "title")


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


_CATEGORY_WITH_ROLE = (  # built once: every launch's landing page runs it
    select(Category, RBACMembership.role)
    .select_from(Category)
    .outerjoin(rbac_group_category, rbac_group_category.c.category_id == Category.id)
    .outerjoin(RBACMembership,
               (RBACMembership.rbac_group_id == rbac_group_category.c.rbac_group_id)
               & (RBACMembership.user_id == bindparam("user_id")))
    .where(Category.id == bindparam("category_id"))
)


def known_category_role(user: User, category: Category, role: GroupRole | None) -> None:
    """Tell `category_with_role` what it would read, for the rest of this request: a launch
    knows the role it left the user with, and its page need not read it again."""
    g.category_roles = {(user.id, category.id): (category, role)}


def category_with_role(user: User, category_id: int) -> tuple[Category | None, GroupRole | None]:
    """The category and `category_role` of the user in it, in one query (None: no such
    category)."""
    known = g.get("category_roles", {}).get((user.id, category_id))
    if known is not None:
        return known
    rows = db.session.execute(_CATEGORY_WITH_ROLE,
                              {"user_id": user.id, "category_id": category_id}).all()
    if not rows:
        return None, None
    roles = [role for _, role in rows if role is not None]
    return rows[0][0], max(roles, key=lambda r: r.rank, default=None)


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


def category_media(
    category: Category, after: str | int | None = None, *, q: str = "", sort: str = "newest",
) -> tuple[list[Media], str | None]:
    """A page of a category's media (newest first, or by title), matching the search `q`, and
    the next page's cursor (private items only appear on their owner's page)."""
    from .deep_linking import search_condition  # here: deep_linking imports this module

    if after is None and sort != "title" and search_condition(q) is None:
        # The course page a launch answers with: its statement is built once.
        rows = db.session.scalars(_COURSE_FIRST_PAGE, {"category_id": category.id}).unique().all()
        items, next_id = page_of(rows, PAGE_SIZE)
        return items, (str(next_id) if next_id is not None else None)
    query = select(Media).where(
        Media.category_id == category.id, Media.visibility != Visibility.PRIVATE)
    return library_page(query, q, sort, after)


_COURSE_FIRST_PAGE = (
    select(Media)
    .where(Media.category_id == bindparam("category_id"), Media.visibility != Visibility.PRIVATE)
    .order_by(Media.created_at.desc(), Media.id.desc())
    .limit(PAGE_SIZE + 1)
)


def own_media(
    user: User, after: str | int | None = None, *, q: str = "", sort: str = "newest",
) -> tuple[list[Media], str | None]:
    """A page of the user's own media, as `category_media` pages a course's."""
    return library_page(select(Media).where(Media.owner_id == user.id), q, sort, after)


def library_page(query, q: str, sort: str, after: str | int | None):
    """One page of `query`, searched (the picker's full-text search) and sorted, by key.

    Newest first pages on (created_at, id) with the last item's id as the cursor; by title on
    (lower(title), id) with a cursor of both, "<id>:<title>", so a renamed or deleted item
    never loses the reader's place. A cursor that makes no sense gives the first page.
    """
    # Imported here: deep_linking imports this module.
    from .deep_linking import search_condition

    if (condition := search_condition(q)) is not None:
        query = query.where(condition)
    if sort != "title":
        try:
            cursor = int(after) if after is not None else None
        except ValueError:
            cursor = None
        items, next_id = newest_first(query, Media, cursor, PAGE_SIZE)
        return items, (str(next_id) if next_id is not None else None)
    key = func.lower(Media.title)
    if (last := title_cursor(after)) is not None:
        query = query.where(tuple_(key, Media.id) > tuple_(func.lower(literal(last[1])), last[0]))
    rows = db.session.scalars(query.order_by(key, Media.id).limit(PAGE_SIZE + 1)).all()
    items = list(rows[:PAGE_SIZE])
    more = len(rows) > PAGE_SIZE
    return items, (f"{items[-1].id}:{items[-1].title}" if more else None)


def title_cursor(after: str | int | None) -> tuple[int, str] | None:
    """(id, title) from a title page's cursor, or None."""
    number, sep, title = str(after or "").partition(":")
    if not sep or not number.isdigit() or int(number) > MAX_ID:
        return None
    return int(number), title


def can_upload_to(user: User, category: Category, role: GroupRole | None = None) -> bool:
    """Course contributors and managers add media to it; editors and above anywhere.
    `role`: the user's in this category, when already known."""
    if user.has_global_role(GlobalRole.EDITOR):
        return True
    role = role or category_role(user, category)
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


def manages_category(user: User, category: Category, role: GroupRole | None = None) -> bool:
    """Edits and deletes every item of the course (its managers, editors): `can_manage_media`
    for a whole page of the course's media at once. `role`: the user's, when already known."""
    if user.has_global_role(GlobalRole.EDITOR):
        return True
    return (role or category_role(user, category)) is GroupRole.MANAGER


def course_of(user: User, media: Media) -> Category | None:
    """The course whose media page the item's player leads back to, if the user may see it."""
    category = media.category
    if category is not None and can_view_category(user, category):
        return category
    return None


def can_manage_media(user: User, media: Media) -> bool:
    """Edit and delete: the owner, editors and above, and managers of its course."""
    if media.owner_id == user.id or user.has_global_role(GlobalRole.EDITOR):
        return True
    return media.category is not None and category_role(user, media.category) is GroupRole.MANAGER
