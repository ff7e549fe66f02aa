"""Figures for the admin home page."""

from datetime import UTC, datetime, time

from sqlalchemy import func, select

from ..extensions import db
from ..models import Category, LTILaunchLog, LTIPlatform, Media, User


def _count(query) -> int:
    return db.session.scalar(select(func.count()).select_from(query.subquery())) or 0


def summary() -> dict[str, int]:
    """Counts at a glance: active platforms, today's launches and failures, users, media,
    courses."""
    today = datetime.combine(datetime.now(UTC).date(), time.min, tzinfo=UTC)
    launches = select(LTILaunchLog.id).where(LTILaunchLog.created_at >= today)
    return {
        "active platforms": _count(select(LTIPlatform.id).where(LTIPlatform.active.is_(True))),
        "launches today": _count(launches),
        "failed launches today": _count(launches.where(LTILaunchLog.success.is_(False))),
        "users": _count(select(User.id)),
        "media": _count(select(Media.id)),
        "courses": _count(select(Category.id).where(Category.is_lms_course.is_(True))),
    }


def recent_failures(limit: int = 5) -> list[LTILaunchLog]:
    return list(db.session.scalars(
        select(LTILaunchLog).where(LTILaunchLog.success.is_(False))
        .order_by(LTILaunchLog.created_at.desc(), LTILaunchLog.id.desc()).limit(limit)
    ))
