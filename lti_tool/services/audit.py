"""The launch log for support staff: filtered search by key, capped counts, CSV, retention."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import delete, false, func, or_, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import LaunchType, LTILaunchLog, LTIResourceLink, LTIUserMapping, User
from .paging import newest_first

log = logging.getLogger(__name__)

PAGE_SIZE = 50
COUNT_CAP = 10_000


@dataclass
class Filters:
    """What the viewer filters on; every field optional, all combined with AND."""

    platform_id: int | None = None
    success: bool | None = None
    error_category: str = ""
    launch_type: LaunchType | None = None
    user: str = ""  # username or LTI sub
    course: str = ""  # context id or title
    date_from: date | None = None
    date_to: date | None = None
    text: str = ""  # in the error message

    @property
    def any(self) -> bool:
        return any(v not in (None, "") for v in vars(self).values())


def _filtered(filters: Filters):
    query = select(LTILaunchLog)
    conditions = []
    if filters.platform_id:
        conditions.append(LTILaunchLog.platform_id == filters.platform_id)
    if filters.success is not None:
        conditions.append(LTILaunchLog.success.is_(filters.success))
    if filters.error_category:
        conditions.append(LTILaunchLog.error_category == filters.error_category)
    if filters.launch_type is not None:
        conditions.append(LTILaunchLog.launch_type == filters.launch_type)
    if filters.user.strip():
        # Resolved to ids first, so the (user_id, created_at, id) index serves the page.
        who = filters.user.strip()
        user_ids = db.session.scalars(
            select(User.id).where(User.username == who).union(
                select(LTIUserMapping.user_id).where(LTIUserMapping.lti_user_id == who))
        ).all()
        conditions.append(LTILaunchLog.user_id.in_(user_ids) if user_ids else false())
    if filters.course.strip():
        course = filters.course.strip()
        conditions.append(LTILaunchLog.resource_link_id.in_(
            select(LTIResourceLink.id).where(or_(
                LTIResourceLink.context_id == course,
                func.lower(LTIResourceLink.context_title).like(f"%{course.lower()}%"),
            ))
        ))
    if filters.date_from:
        conditions.append(
            LTILaunchLog.created_at >= datetime.combine(filters.date_from, time.min, UTC))
    if filters.date_to:
        conditions.append(LTILaunchLog.created_at < datetime.combine(
            filters.date_to + timedelta(days=1), time.min, UTC))
    if filters.text.strip():
        conditions.append(
            func.lower(LTILaunchLog.error_message).like(f"%{filters.text.strip().lower()}%"))
    return query.where(*conditions)


def search_launch_logs(
    filters: Filters, before: int | None = None
) -> tuple[list[LTILaunchLog], int | None]:
    """A page of matching entries newest first, and the cursor of the next page.

    Pages by key on (created_at, id): a deep page costs what the first does.
    """
    query = _filtered(filters).options(
        joinedload(LTILaunchLog.platform), joinedload(LTILaunchLog.user),
        joinedload(LTILaunchLog.resource_link))
    return newest_first(query, LTILaunchLog, before, PAGE_SIZE)


def capped_count(filters: Filters) -> int | None:
    """How many entries match, counting at most COUNT_CAP + 1; None without filters (the full
    table is never counted)."""
    if not filters.any:
        return None
    inner = _filtered(filters).with_only_columns(LTILaunchLog.id).limit(COUNT_CAP + 1)
    return db.session.scalar(select(func.count()).select_from(inner.subquery()))


def neighbours(entry: LTILaunchLog, window: timedelta = timedelta(hours=1)) -> list[LTILaunchLog]:
    """The same user's other launches around this one (or the same IP's when no user)."""
    same = (LTILaunchLog.user_id == entry.user_id if entry.user_id
            else LTILaunchLog.ip_address == entry.ip_address)
    return list(db.session.scalars(
        select(LTILaunchLog).where(
            same, LTILaunchLog.id != entry.id,
            LTILaunchLog.created_at.between(entry.created_at - window,
                                            entry.created_at + window))
        .order_by(LTILaunchLog.created_at.desc(), LTILaunchLog.id.desc()).limit(20)
    ))


# A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """Text that a spreadsheet shows as written, never runs: a formula start gets a leading
    single quote, which spreadsheets read as "text follows" and do not display."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


CSV_COLUMNS = ("id", "time_utc", "platform", "user", "course", "resource_link", "launch_type",
               "success", "error_category", "error_message", "ip_address", "claims")


def csv_rows(filters: Filters) -> Iterator[str]:
    """The matching entries as CSV text, chunk by chunk: memory stays flat at any size (rows
    come 1,000 at a time; the session's identity map holds them weakly)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    query = _filtered(filters).options(
        joinedload(LTILaunchLog.platform), joinedload(LTILaunchLog.user),
        joinedload(LTILaunchLog.resource_link)
    ).order_by(LTILaunchLog.created_at.desc(), LTILaunchLog.id.desc())
    for n, entry in enumerate(
        db.session.scalars(query.execution_options(yield_per=1000)), start=1
    ):
        link = entry.resource_link
        writer.writerow(spreadsheet_safe(cell) for cell in (
            entry.id, entry.created_at.isoformat(), entry.platform.name,
            entry.user.username if entry.user else "",
            link.context_title if link else "", link.resource_link_title if link else "",
            entry.launch_type.value, "yes" if entry.success else "no",
            entry.error_category or "", entry.error_message,
            entry.ip_address or "", json.dumps(entry.claims or {}, ensure_ascii=False),
        ))
        if n % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def prune(older_than: timedelta, batch: int = 5_000) -> int:
    """Delete entries older than `older_than` in batches (short locks); returns how many.

    Commits after each batch: a prune of millions of rows never holds one long transaction.
    """
    cutoff = datetime.now(UTC) - older_than
    removed = 0
    while True:
        ids = select(LTILaunchLog.id).where(LTILaunchLog.created_at < cutoff).limit(batch)
        result = db.session.execute(
            delete(LTILaunchLog).where(LTILaunchLog.id.in_(ids.scalar_subquery()))
            .execution_options(synchronize_session=False))
        db.session.commit()
        removed += result.rowcount
        if result.rowcount < batch:
            break
    log.info("Pruned %d launch log entries older than %s", removed, cutoff.isoformat())
    return removed


@dataclass
class Bucket:
    start: datetime
    ok: int = 0
    failed: int = 0


def chart_buckets(filters: Filters, now: datetime | None = None) -> tuple[list[Bucket], str]:
    """Launches per hour (ranges up to two days) or per day, failures apart, over the filter's
    date range (default: the last 24 hours). Returns the buckets and their unit."""
    now = now or datetime.now(UTC)
    start = (datetime.combine(filters.date_from, time.min, UTC) if filters.date_from
             else now - timedelta(hours=24))
    end = (datetime.combine(filters.date_to + timedelta(days=1), time.min, UTC)
           if filters.date_to else now)
    unit = "hour" if end - start <= timedelta(days=2) else "day"
    step = timedelta(hours=1) if unit == "hour" else timedelta(days=1)
    first = start.replace(minute=0, second=0, microsecond=0)
    if unit == "day":
        first = first.replace(hour=0)
    buckets: dict[datetime, Bucket] = {}
    moment = first
    while moment < end and len(buckets) < 400:
        buckets[moment] = Bucket(moment)
        moment += step
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        bucket = func.date_trunc(unit, LTILaunchLog.created_at)
    else:
        bucket = func.strftime("%Y-%m-%d %H:00:00" if unit == "hour" else "%Y-%m-%d 00:00:00",
                               LTILaunchLog.created_at)
    query = (
        _filtered(Filters(**{**vars(filters), "date_from": None, "date_to": None}))
        .where(LTILaunchLog.created_at >= start, LTILaunchLog.created_at < end)
        .with_only_columns(bucket.label("bucket"), LTILaunchLog.success, func.count())
        .group_by(bucket, LTILaunchLog.success)
    )
    for when, success, count in db.session.execute(query):
        if isinstance(when, str):
            when = datetime.fromisoformat(when).replace(tzinfo=UTC)
        elif when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        entry = buckets.get(when.astimezone(UTC))
        if entry is not None:
            if success:
                entry.ok += count
            else:
                entry.failed += count
    return list(buckets.values()), unit
