"""A course's class list from the LMS, for its managers: what a sync would change, the sync, its
result, and every sync before it."""

from __future__ import annotations

from flask import abort, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import select, tuple_
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import (
    Category,
    GroupRole,
    LTIPlatform,
    RBACGroup,
    RosterChange,
    RosterChangeKind,
    RosterSync,
)
from ..services import access, nrps
from ..services.paging import MAX_ID
from .views import bp

HISTORY_PAGE_SIZE = 50

# Who started a sync, as RosterSync.trigger records it, in a manager's words.
TRIGGERS = {
    "manager": "a course manager",
    "command": "an administrator's command",
    "launch": "automatically, after a teacher opened the tool",
}
STATUS_LABELS = {"running": "Running", "ok": "Done", "failed": "Failed"}


class ApplyForm(FlaskForm):
    """Just the CSRF token: the changes applied are the ones the page showed, read again."""


@bp.app_template_global()
def course_group(category: Category) -> RBACGroup | None:
    """The group mirroring the LMS course this category was made for (None for other
    categories)."""
    if category.platform_id is None or category.lti_context_id is None:
        return None
    return db.session.scalar(select(RBACGroup).where(
        RBACGroup.platform_id == category.platform_id,
        RBACGroup.lti_context_id == category.lti_context_id))


def managed_course(id: int) -> tuple[Category, RBACGroup]:
    """The course and its group, if the signed-in user manages it: else 404 or 403."""
    category = db.get_or_404(Category, id)
    if access.category_role(current_user, category) is not GroupRole.MANAGER:
        abort(403, description="Only this course's managers (its teachers) may sync its "
                               "class list.")
    group = course_group(category)
    if group is None:
        abort(404, description="This category is not a course from the LMS: it has no class "
                               "list to sync.")
    return category, group


def _platform(group: RBACGroup) -> LTIPlatform | None:
    return db.session.get(LTIPlatform, group.platform_id) if group.platform_id else None


def skip_reason(platform: LTIPlatform | None) -> str:
    """Why a sync leaves people out, as the platform's settings decide."""
    if platform is not None and not platform.auto_create_users:
        return ("they have no account in the media tool yet, and accounts are not created for "
                "people from this LMS. Your administrator can map them to accounts or switch "
                "on “Create users on their first launch”.")
    return "the LMS sent them without the user id that identifies them."


def _settings(group: RBACGroup) -> dict:
    """What the pages say about the platform's sync settings."""
    platform = _platform(group)
    return {"skip_reason": skip_reason(platform),
            "remove_on": bool(platform and platform.remove_from_groups_on_unenroll)}


def why_not_syncable(group: RBACGroup) -> str | None:
    """Why this course's class list cannot be read now, in a manager's words; None if it can."""
    platform = _platform(group)
    if platform is None or not platform.enable_nrps:
        return ("Reading class lists from this LMS is switched off in the media tool. Ask "
                "your administrator to switch on “Sync course rosters” for this LMS.")
    if not group.memberships_url:
        return ("The LMS has not told the media tool where this course's class list is yet. "
                "Open the tool once from this course's page in the LMS as a teacher, then "
                "come back here.")
    return None


@bp.route("/category/<int:id>/roster", methods=["GET", "POST"])
@login_required
def roster(id: int):
    """What a sync would change (a dry run); POST applies it and shows the result."""
    category, group = managed_course(id)
    problem = why_not_syncable(group)
    form = ApplyForm()
    status = 400 if request.method == "POST" else 200
    if problem is None and form.validate_on_submit():
        try:
            result = nrps.sync(group, trigger="manager", user=current_user)
        except nrps.SyncRefused as e:  # one already running: its result shows in the history
            problem, status = e.reason, 409
        else:
            return redirect(url_for(".roster_result", id=id, sync_id=result.id), 303)
    plan = None
    if problem is None:
        plan = nrps.plan_sync(group)
        db.session.commit()  # only when the platform last answered a roster request
    return render_template(
        "media/roster.html", category=category, group=group, problem=problem, plan=plan,
        form=form, **_settings(group),
    ), status


@bp.get("/category/<int:id>/roster/<int:sync_id>")
@login_required
def roster_result(id: int, sync_id: int):
    """One sync: who it added, changed and removed, or why it failed."""
    category, group = managed_course(id)
    sync = db.session.get(RosterSync, sync_id)
    if sync is None or sync.rbac_group_id != group.id:
        abort(404)
    changes = {kind: [] for kind in RosterChangeKind}
    for change in db.session.scalars(
        sync.changes.select().order_by(RosterChange.name, RosterChange.id)
    ):
        changes[change.kind].append(change)
    return render_template("media/roster_result.html", category=category, group=group,
                           sync=sync, changes=changes, triggers=TRIGGERS,
                           statuses=STATUS_LABELS, **_settings(group))


@bp.get("/category/<int:id>/roster/history")
@login_required
def roster_history(id: int):
    """Every sync of the course, newest first, by key (`?before=<sync id>`)."""
    category, group = managed_course(id)
    before = request.args.get("before", type=int)
    syncs, next_before = sync_history(group, before)
    return render_template("media/roster_history.html", category=category, group=group,
                           syncs=syncs, before=before, next_before=next_before,
                           triggers=TRIGGERS, statuses=STATUS_LABELS)


def sync_history(group: RBACGroup, before: int | None,
                 size: int = HISTORY_PAGE_SIZE) -> tuple[list[RosterSync], int | None]:
    """A page of the group's syncs, newest first, after the sync `before`; and the next
    page's cursor (None on the last page). A cursor naming no sync of the group gives the
    first page."""
    query = select(RosterSync).where(RosterSync.rbac_group_id == group.id)
    if before is not None and abs(before) <= MAX_ID:
        last = db.session.execute(
            select(RosterSync.started_at, RosterSync.id).where(
                RosterSync.id == before, RosterSync.rbac_group_id == group.id)
        ).first()
        if last is not None:
            query = query.where(tuple_(RosterSync.started_at, RosterSync.id) < tuple_(*last))
    rows = db.session.scalars(
        query.options(selectinload(RosterSync.triggered_by))
        .order_by(RosterSync.started_at.desc(), RosterSync.id.desc()).limit(size + 1)
    ).all()
    items = list(rows[:size])
    return items, (items[-1].id if len(rows) > size else None)
