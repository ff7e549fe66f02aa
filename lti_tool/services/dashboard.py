"""Figures for the admin home page."""

import statistics
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import func, select

from ..extensions import db
from ..models import Category, LTILaunchLog, LTIPlatform, Media, User

SKEW_SAMPLE = 50


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


def platform_health(platform: LTIPlatform) -> dict:
    """The figures of a platform's health panel: launches and failures in the last hour and
    day, the top failure categories, the last success, and the clock skew measured as our
    log time minus the token's iat over recent launches (it includes the browser's trip)."""
    now = datetime.now(UTC)
    logs = select(LTILaunchLog.id).where(LTILaunchLog.platform_id == platform.id)
    figures: dict = {}
    for label, since in (("hour", now - timedelta(hours=1)), ("day", now - timedelta(days=1))):
        recent = logs.where(LTILaunchLog.created_at >= since)
        figures[f"launches_{label}"] = _count(recent)
        figures[f"failures_{label}"] = _count(recent.where(LTILaunchLog.success.is_(False)))
    figures["top_failures"] = db.session.execute(
        select(LTILaunchLog.error_category, func.count())
        .where(LTILaunchLog.platform_id == platform.id, LTILaunchLog.success.is_(False),
               LTILaunchLog.created_at >= now - timedelta(days=1))
        .group_by(LTILaunchLog.error_category)
        .order_by(func.count().desc(), LTILaunchLog.error_category).limit(3)
    ).all()
    figures["last_success"] = db.session.scalar(
        select(func.max(LTILaunchLog.created_at))
        .where(LTILaunchLog.platform_id == platform.id, LTILaunchLog.success.is_(True))
    )
    samples = [
        (created_at - datetime.fromtimestamp(claims["iat"], UTC)).total_seconds()
        for created_at, claims in db.session.execute(
            select(LTILaunchLog.created_at, LTILaunchLog.claims)
            .where(LTILaunchLog.platform_id == platform.id)
            .order_by(LTILaunchLog.created_at.desc(), LTILaunchLog.id.desc())
            .limit(SKEW_SAMPLE)
        )
        if isinstance(claims, dict) and isinstance(claims.get("iat"), int | float)
    ]
    figures["skew_seconds"] = round(statistics.median(samples), 1) if samples else None
    figures["skew_samples"] = len(samples)
    return figures
