"""Names and Roles (NRPS 2.0): syncing a course's roster (read by `nrps_reader`) into its
course group (the job and the launch's trigger are in `nrps_jobs`).

Rules (see the README and services.md §2):
- Members are matched by `user_id` (= the `sub` of their launches) through the platform's user
  mappings; missing users are created with `auto_create_users`, else skipped and counted. Roles go
  through the launch's mapping (`launch_roles` / `map_roles`); names and emails refresh as a
  launch's would, but only with what the roster sends (privacy settings may hide them).
- With `auto_sync_roles` a sync raises any role, and lowers only a role it set itself: a role set
  by a launch is not lowered (Moodle's NRPS calls a non-editing teacher, an Instructor in its
  launches, a Learner), nor one added by hand. Without it existing memberships stay as they are.
- Removal only after a complete read, only with `remove_from_groups_on_unenroll`, only
  memberships that came from a launch or a sync (never `manual`); `Inactive` and `Deleted`
  members count as gone.
- All or nothing: the roster is applied page by page in one transaction, committed after the
  last page. Any failure (platform refusal, timeout, malformed page, a page failing after others)
  rolls it all back: nobody added, changed or removed; the failure and its reason are recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from ..extensions import cache, db
from ..models import (
    GroupRole,
    LTIPlatform,
    LTIRoleMapping,
    LTIUserMapping,
    MembershipSource,
    RBACGroup,
    RBACMembership,
    RosterChange,
    RosterChangeKind,
    RosterStatus,
    RosterSync,
    User,
)
from .accounts import Profile, create_users, dialect_insert, user_changes
from .nrps_reader import (  # noqa: F401 (the reading API, used through this module too)
    ACCEPT,
    Member,
    RosterError,
    check_memberships_url,
    next_link,
    parse_page,
    platform_hosts,
    read_roster,
    with_limit,
)
from .platform_tokens import ServiceError
from .roles import MappedRoles, map_roles

log = logging.getLogger(__name__)

LOCK_KEY = "roster-sync:"
LOCK_SECONDS = 20 * 60  # longer than a short job may run; a crashed sync frees it by then
REMOVE_BATCH = 500
TRIGGERS = ("manager", "command", "launch")
REMOVABLE = (MembershipSource.LAUNCH, MembershipSource.ROSTER)


class SyncRefused(Exception):
    """A sync that cannot start: no roster address, NRPS switched off, or one already running."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def refusal(group: RBACGroup) -> str | None:
    """Why the course's roster cannot be synced now, or None."""
    platform = db.session.get(LTIPlatform, group.platform_id) if group.platform_id else None
    if platform is None:
        return "This group is not a course of an LMS platform."
    if not platform.enable_nrps:
        return (f"Roster sync (Names and Roles) is switched off for {platform.name}: an admin "
                "can switch it on in the platform's settings.")
    if not group.memberships_url:
        return ("The platform has not told the tool where this course's roster is yet: a "
                "launch from the course with Names and Roles enabled for the tool brings it.")
    return None


# Planning and applying -------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedChange:
    name: str
    user_id: int | None  # None: a user created by the sync
    sub: str
    old_role: GroupRole | None
    new_role: GroupRole | None


@dataclass
class Plan:
    """What a sync would do (a dry run). `error` is why the roster could not be read in full."""

    members: int = 0
    to_add: list[PlannedChange] = field(default_factory=list)
    role_changes: list[PlannedChange] = field(default_factory=list)
    to_remove: list[PlannedChange] = field(default_factory=list)
    skipped: list[PlannedChange] = field(default_factory=list)
    error: str = ""

    def summary(self) -> str:
        return summary_line(self.members, len(self.to_add), len(self.role_changes),
                            len(self.to_remove), len(self.skipped), dry_run=True)


def summary_line(members: int, added: int, updated: int, removed: int, skipped: int, *,
                 dry_run: bool = False) -> str:
    """`250 members: 250 added, 0 updated, 0 removed, 0 skipped` (or `would add` …)."""
    if dry_run:
        return (f"{members} members: would add {added}, update {updated}, remove {removed}, "
                f"skip {skipped}")
    return (f"{members} members: {added} added, {updated} updated, {removed} removed, "
            f"{skipped} skipped")


def _new_role(platform: LTIPlatform, old: GroupRole, source: MembershipSource,
              mapped: GroupRole) -> GroupRole | None:
    """The role an existing membership gets from the roster, or None to leave it."""
    if not platform.auto_sync_roles or mapped is old:
        return None
    if mapped.rank > old.rank or source is MembershipSource.ROSTER:
        return mapped
    return None  # a launch's or a manager's role is not lowered by the roster


def _label(profile: Profile, name: str, sub: str) -> str:
    return (name or profile.full_name or profile.email or f"LMS user {sub}")[:255]


class _Run:
    """One pass over a roster: plans, and with `apply` writes (flushed) each page's changes."""

    def __init__(self, group: RBACGroup, platform: LTIPlatform, *, apply: bool,
                 sync_id: int | None = None):
        self.group, self.platform, self.apply, self.sync_id = group, platform, apply, sync_id
        self.mappings = list(db.session.scalars(
            select(LTIRoleMapping).where(LTIRoleMapping.platform_id == platform.id)))
        self.plan = Plan()
        self.keep_lists = not apply  # a real sync records its changes instead
        self.counts = {"added": 0, "updated": 0, "removed": 0, "skipped": 0}
        self.seen_subs: set[str] = set()
        self.present: set[int] = set()  # users in the roster (active)
        self.now = datetime.now(UTC)
        self.pages = 0
        self.answered_at: datetime | None = None  # kept across a rollback

    def run(self) -> None:
        for members in read_roster(self.platform, self.group.memberships_url):
            self.pages += 1
            self.answered_at = self.answered_at or datetime.now(UTC)
            self.page(members)
        if self.platform.remove_from_groups_on_unenroll:
            self.removals()

    def _note(self, kind: str, change: PlannedChange) -> None:
        self.counts[kind] += 1
        if self.keep_lists:
            {"added": self.plan.to_add, "updated": self.plan.role_changes,
             "removed": self.plan.to_remove, "skipped": self.plan.skipped}[kind].append(change)

    def page(self, members: list[Member]) -> None:
        fresh = []
        for member in members:
            if not member.sub:
                self.plan.members += member.active
                if member.active:
                    self._note("skipped", PlannedChange(_label(member.profile, "", "?"), None,
                                                        "", None, None))
                continue
            if member.sub in self.seen_subs:
                continue
            self.seen_subs.add(member.sub)
            fresh.append(member)
        if not fresh:
            return
        known = {row.lti_user_id: row for row in db.session.execute(
            select(LTIUserMapping.id.label("mapping_id"), LTIUserMapping.lti_user_id,
                   LTIUserMapping.email.label("m_email"), LTIUserMapping.given_name,
                   LTIUserMapping.family_name, LTIUserMapping.name.label("m_name"),
                   User.id.label("user_id"), User.name, User.email, User.global_role)
            .join(User, User.id == LTIUserMapping.user_id)
            .where(LTIUserMapping.platform_id == self.platform.id,
                   LTIUserMapping.lti_user_id.in_([m.sub for m in fresh])))}
        user_ids = [row.user_id for row in known.values()]
        memberships = {row.user_id: row for row in db.session.execute(
            select(RBACMembership.id, RBACMembership.user_id, RBACMembership.role,
                   RBACMembership.source)
            .where(RBACMembership.rbac_group_id == self.group.id,
                   RBACMembership.user_id.in_(user_ids)))} if user_ids else {}
        joins: list[dict[str, Any]] = []
        raises: dict[GroupRole, list[int]] = {}
        changes: list[dict[str, Any]] = []
        active = [(m, map_roles(m.roles, self.mappings)) for m in fresh if m.active]
        created: dict[str, int] = {}
        if self.apply and self.platform.auto_create_users:
            created = create_users(self.platform, [(m.sub, m.profile, roles)
                                                   for m, roles in active if m.sub not in known],
                                   self.now)
        for member, roles in active:  # the gone are left to the removals after a full read
            self.plan.members += 1
            row = known.get(member.sub)
            user_id = row.user_id if row else created.get(member.sub)
            if row is None and not self.platform.auto_create_users:
                self._note("skipped", PlannedChange(
                    _label(member.profile, "", member.sub), None, member.sub, None, None))
                continue
            if row is not None and self.apply:
                self._refresh(row, member.profile, roles)
            name = _label(member.profile, row.name if row else "", member.sub)
            if user_id is not None:
                self.present.add(user_id)
            membership = memberships.get(user_id) if user_id is not None else None
            if membership is None:
                change = PlannedChange(name, user_id, member.sub, None, roles.group_role)
                if self.apply:
                    joins.append({"rbac_group_id": self.group.id, "user_id": user_id,
                                  "role": roles.group_role, "source": MembershipSource.ROSTER,
                                  "created_at": self.now})
                    changes.append(self._change(change, RosterChangeKind.ADDED))
                self._note("added", change)
                continue
            role = _new_role(self.platform, membership.role, membership.source,
                             roles.group_role)
            if role is not None:
                change = PlannedChange(name, user_id, member.sub, membership.role, role)
                raises.setdefault(role, []).append(membership.id)
                changes.append(self._change(change, RosterChangeKind.UPDATED))
                self._note("updated", change)
        if self.apply:
            self._write(joins, raises, changes)

    def _refresh(self, row: Any, profile: Profile, roles: MappedRoles) -> None:
        """Names, email and global role as a launch would set them, written only if changed;
        the mapping's cached profile takes only the fields the roster sent."""
        changes = user_changes(self.platform, row, profile, roles)
        if changes:
            db.session.execute(update(User).where(User.id == row.user_id).values(**changes)
                               .execution_options(synchronize_session=False))
        current = {"email": row.m_email, "given_name": row.given_name,
                   "family_name": row.family_name, "name": row.m_name}
        cached = {k: v for k, v in profile.cached().items() if v and v != current[k]}
        if cached:
            db.session.execute(update(LTIUserMapping)
                               .where(LTIUserMapping.id == row.mapping_id).values(**cached)
                               .execution_options(synchronize_session=False))

    def _change(self, change: PlannedChange, kind: RosterChangeKind) -> dict[str, Any]:
        return {"roster_sync_id": self.sync_id, "user_id": change.user_id, "name": change.name,
                "kind": kind, "old_role": change.old_role, "new_role": change.new_role}

    def _write(self, joins: list[dict[str, Any]], roles: dict[GroupRole, list[int]],
               changes: list[dict[str, Any]]) -> None:
        if joins:  # executemany: compiled once per sync, not per page
            db.session.execute(
                dialect_insert(RBACMembership.__table__)
                .on_conflict_do_nothing(index_elements=["rbac_group_id", "user_id"]), joins)
        for role, ids in roles.items():
            db.session.execute(update(RBACMembership).where(RBACMembership.id.in_(ids))
                               .values(role=role).execution_options(synchronize_session=False))
        if changes:
            db.session.execute(insert(RosterChange.__table__), changes)

    def removals(self) -> None:
        """Memberships from launches or syncs whose person is not in the (complete) roster."""
        rows = [row for row in db.session.execute(
            select(RBACMembership.id, RBACMembership.user_id, RBACMembership.role, User.name,
                   User.username)
            .join(User, User.id == RBACMembership.user_id)
            .where(RBACMembership.rbac_group_id == self.group.id,
                   RBACMembership.source.in_(REMOVABLE))
            .order_by(RBACMembership.id)) if row.user_id not in self.present]
        if not rows:
            return
        subs: dict[int, str] = {}
        if self.keep_lists:  # a plan names people by their sub too
            found = db.session.execute(
                select(LTIUserMapping.user_id, LTIUserMapping.lti_user_id)
                .where(LTIUserMapping.platform_id == self.platform.id,
                       LTIUserMapping.user_id.in_([r.user_id for r in rows])))
            subs = {user_id: sub for user_id, sub in found}
        for start in range(0, len(rows), REMOVE_BATCH):
            batch = rows[start:start + REMOVE_BATCH]
            changes = []
            for row in batch:
                change = PlannedChange(row.name or row.username, row.user_id,
                                       subs.get(row.user_id, ""), row.role, None)
                changes.append(self._change(change, RosterChangeKind.REMOVED))
                self._note("removed", change)
            if self.apply:
                db.session.execute(delete(RBACMembership)
                                   .where(RBACMembership.id.in_([r.id for r in batch]))
                                   .execution_options(synchronize_session=False))
                db.session.execute(insert(RosterChange.__table__), changes)


def plan_sync(group: RBACGroup) -> Plan:
    """A dry run: reads the whole roster and says what a sync would change, writing nothing
    (but the platform's `roster_answered_at`, flushed). `Plan.error` says why it could not."""
    reason = refusal(group)
    if reason:
        return Plan(error=reason)
    platform = db.session.get(LTIPlatform, group.platform_id)
    run = _Run(group, platform, apply=False)
    try:
        run.run()
    except (ServiceError, RosterError) as e:
        run.plan.error = _incomplete(e, run.pages)
    if run.answered_at is not None:
        platform.roster_answered_at = run.answered_at
    return run.plan


def _incomplete(error: ServiceError | RosterError, pages: int) -> str:
    where = f" (after {pages} page{'s' if pages != 1 else ''} read)" if pages else ""
    return (f"Sync incomplete{where}: {error.reason} Nobody was added, changed or removed.")


def sync(group: RBACGroup, *, trigger: str, user: User | None = None,
         dry_run: bool = False) -> RosterSync:
    """Sync the course's roster into its group and record it (a RosterSync with a RosterChange
    per person added, changed or removed; the group's roster_* fields).

    Commits its own transactions: the running sync, then the roster all at once, or on failure
    nothing of it but the failure's reason. `dry_run`: nothing is written; the returned
    RosterSync (not added to the session) carries the counts a sync would have.
    Raises SyncRefused when it cannot start (see `refusal`, or a sync of the course running).
    """
    return sync_with_error(group, trigger=trigger, user=user, dry_run=dry_run)[0]


def sync_with_error(group: RBACGroup, *, trigger: str, user: User | None = None,
                    dry_run: bool = False) -> tuple[RosterSync, Exception | None]:
    """`sync`, also returning the error that failed it (None if it did not), for callers that
    decide by it whether to try again later (the job)."""
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown trigger {trigger!r}")
    if dry_run:
        plan = plan_sync(group)
        record = RosterSync(rbac_group_id=group.id, trigger=trigger,
                            triggered_by_id=user.id if user else None,
                            status=RosterStatus.FAILED if plan.error else RosterStatus.OK,
                            members=plan.members, added=len(plan.to_add),
                            updated=len(plan.role_changes), removed=len(plan.to_remove),
                            skipped=len(plan.skipped), error=plan.error,
                            started_at=datetime.now(UTC), finished_at=datetime.now(UTC))
        return record, None
    reason = refusal(group)
    if reason:
        raise SyncRefused(reason)
    group_id, lock = group.id, f"{LOCK_KEY}{group.id}"
    if not cache.add(lock, 1, timeout=LOCK_SECONDS):
        raise SyncRefused("A roster sync of this course is already running; its result "
                          "will show here when it ends.")
    try:
        record = RosterSync(rbac_group_id=group_id, trigger=trigger,
                            triggered_by_id=user.id if user else None,
                            status=RosterStatus.RUNNING)
        db.session.add(record)
        group.roster_status = RosterStatus.RUNNING
        db.session.commit()
        record_id = record.id
        platform = db.session.get(LTIPlatform, group.platform_id)
        run = _Run(group, platform, apply=True, sync_id=record_id)
        error: Exception | None = None
        try:
            run.run()
        except (ServiceError, RosterError) as e:
            error = e
        except Exception as e:
            db.session.rollback()
            _finish(record_id, group_id, run, f"Sync failed on an unexpected error "
                    f"({type(e).__name__}); nobody was added, changed or removed.")
            raise
        if error is not None:
            db.session.rollback()
            record = _finish(record_id, group_id, run, _incomplete(error, run.pages),
                             forget_url=getattr(error, "status", None) == 404)
        else:
            record = _finish(record_id, group_id, run, None)
        log.info("Roster sync %s of group %s (%s): %s", record_id, group_id, trigger,
                 "failed" if error else summary_line(run.plan.members, **run.counts))
        return record, error
    finally:
        cache.delete(lock)


def _finish(sync_id: int, group_id: int, run: _Run, error: str | None,
            forget_url: bool = False) -> RosterSync:
    """Record the outcome on the sync and the course, and commit. `forget_url`: the address
    answered 404 (the course is gone, or the tool is no longer in it): it is dropped until a
    launch from the course brings it again."""
    now = datetime.now(UTC)
    counts = ({"members": run.plan.members, **run.counts} if error is None else
              {"members": 0, "added": 0, "updated": 0, "removed": 0, "skipped": 0})
    status = RosterStatus.FAILED if error else RosterStatus.OK
    record = db.session.get(RosterSync, sync_id)
    for name, value in {"status": status, "error": error or "", "finished_at": now,
                        **counts}.items():
        setattr(record, name, value)
    group = db.session.get(RBACGroup, group_id)
    group.roster_status, group.roster_error = status, error or ""
    group.roster_synced_at, group.roster_counts = now, counts
    if forget_url:
        group.memberships_url = None
    if run.answered_at is not None:
        run.platform.roster_answered_at = run.answered_at
    db.session.commit()
    return record
