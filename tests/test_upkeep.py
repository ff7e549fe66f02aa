"""Scheduled upkeep runs as jobs (what the scheduler submits), and the broker settings that keep
long transcodes from running twice."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from lti_tool import create_app
from lti_tool.extensions import db
from lti_tool.models import Job, JobState, LTILaunchLog, LTIPlatform, Upload, User
from lti_tool.services import jobs
from lti_tool.worker import celery_config


def _run_scheduled(kind: str) -> Job:
    job = jobs.submit(kind, subject=kind)
    assert jobs.run_waiting() == 1
    return db.session.get(Job, job.id, populate_existing=True)


def test_the_launch_log_is_pruned_by_audit_retention_days(app, db, make_platform):
    platform: LTIPlatform = make_platform()
    now = datetime.now(UTC)
    for age in (1, 89, 91, 400):
        db.session.add(LTILaunchLog(platform_id=platform.id, success=True,
                                    created_at=now - timedelta(days=age)))
    db.session.commit()
    app.config["AUDIT_RETENTION_DAYS"] = 90
    assert _run_scheduled("audit.prune").state is JobState.DONE
    left = sorted((now - c).days for c in db.session.scalars(sa.select(LTILaunchLog.created_at)))
    assert left == [1, 89]


def test_abandoned_uploads_are_removed_and_fresh_ones_kept(app, db, make_user):
    user: User = make_user()
    parts = Path(app.config["MEDIA_ROOT"]) / ".uploads"
    parts.mkdir(parents=True)
    old = datetime.now(UTC) - timedelta(hours=app.config["UPLOAD_EXPIRY_HOURS"] + 1)
    for upload_id, when in (("old", old), ("fresh", datetime.now(UTC))):
        db.session.add(Upload(id=upload_id, user_id=user.id, length=10, offset=4,
                              details={}, created_at=when, updated_at=when))
        (parts / f"{upload_id}.part").write_bytes(b"abcd")
    db.session.commit()
    assert _run_scheduled("uploads.cleanup").state is JobState.DONE
    assert list(db.session.scalars(sa.select(Upload.id))) == ["fresh"]
    assert sorted(p.name for p in parts.iterdir()) == ["fresh.part"]


def test_a_scheduled_job_runs_one_at_a_time(db):
    first = jobs.submit("jobs.forget", subject="jobs.forget")
    second = jobs.submit("jobs.forget", subject="jobs.forget")
    assert first.id == second.id


def test_brokers_by_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("REDIS_URL", raising=False)
    embedded = celery_config(create_app())
    assert embedded["broker_url"] == f"sqla+sqlite:///{tmp_path / 'instance' / 'jobs.sqlite3'}"

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("TRANSCODE_TIME_LIMIT_MINUTES", "300")
    redis = celery_config(create_app())
    assert redis["broker_url"] == "redis://127.0.0.1:6379/0"
    assert redis["broker_transport_options"]["visibility_timeout"] > 300 * 60, (
        "Redis must not hand a transcode to a second worker while the first still runs it")
    assert redis["task_acks_late"] and redis["task_reject_on_worker_lost"]
    assert redis["worker_prefetch_multiplier"] == 1

    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    assert celery_config(create_app())["broker_url"].startswith("amqp://")


def test_platform_keys_are_refreshed_before_a_launch_needs_them(lms, db, make_platform):
    silent = make_platform(key_set_url="https://127.0.0.1:9/certs.php")  # answers nothing
    lms.rotate_key(2)
    job = _run_scheduled("platforms.refresh_keys")
    assert job.state is JobState.DONE
    platform = db.session.get(LTIPlatform, lms.platform.id, populate_existing=True)
    assert [k["kid"] for k in platform.key_set["keys"]] == ["moodle-key-3"]
    assert platform.key_set_updated is not None
    assert db.session.get(LTIPlatform, silent.id).key_set is None, "kept what it had"
