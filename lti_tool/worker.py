"""The Celery app that runs the tool's background jobs, bound to the Flask app.

Production: Redis (`REDIS_URL`) or RabbitMQ (`CELERY_BROKER_URL`) as the broker, any number of
workers on any number of hosts. With no setting, kombu's SQLAlchemy transport over a SQLite file
in the instance folder, so a fresh clone processes media with no server installed.

Start workers with `celery -A wsgi.celery worker -Q long -c 1` (transcodes) and
`celery -A wsgi.celery worker -Q short` (everything else), and one scheduler,
`celery -A wsgi.celery beat` (or `-B` on one short worker).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import Celery, Task, shared_task
from celery.schedules import crontab
from celery.signals import worker_process_init
from flask import Flask
from kombu import Queue

from .extensions import db
from .services import jobs, nrps_jobs, processing, upkeep  # noqa: F401 (their handlers register)

SWEEP_EVERY = 60  # seconds between sweeps for stopped workers and unsent jobs
SHORT_TIME_LIMIT = 600  # seconds a short job may run


def broker_url(config: dict[str, Any], instance_path: str) -> str:
    """CELERY_BROKER_URL, else REDIS_URL, else a SQLite file in the instance folder."""
    if config.get("CELERY_BROKER_URL"):
        return config["CELERY_BROKER_URL"]
    if config.get("REDIS_URL"):
        return config["REDIS_URL"]
    return f"sqla+sqlite:///{Path(instance_path).resolve() / 'jobs.sqlite3'}"


def time_limits(config: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(soft, hard) seconds per queue: the soft limit stops ffmpeg and records why, the hard one
    kills the process if that did not work."""
    long_soft = config.get("TRANSCODE_TIME_LIMIT", 4 * 3600)
    return {jobs.SHORT: (SHORT_TIME_LIMIT, SHORT_TIME_LIMIT + 60),
            jobs.LONG: (long_soft, long_soft + 300)}


def celery_config(app: Flask) -> dict[str, Any]:
    url = broker_url(app.config, app.instance_path)
    limits = time_limits(app.config)
    transport: dict[str, Any] = {}
    if url.startswith(("redis://", "rediss://", "unix://")):
        transport = {
            # Redis hands an unacknowledged task to another worker after this: it must be
            # longer than the longest transcode, or a long encode runs twice.
            "visibility_timeout": limits[jobs.LONG][1] + 3600,
            # The tool's keys only: a shared Redis may serve other applications.
            "global_keyprefix": f"{app.config['CACHE_KEY_PREFIX']}celery:",
        }
    elif url.startswith("sqla+sqlite"):
        # Passed to create_engine(): wait for the file's write lock instead of failing.
        transport = {"connect_args": {"timeout": 30}}
    return {
        "broker_url": url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        # Jobs record their outcome in the tool's own table.
        "task_ignore_result": True,
        "result_backend": None,
        # Acknowledged after the job ran: a worker that dies midway leaves it to another.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": jobs.SHORT,
        "task_queues": [Queue(q) for q in jobs.QUEUES],
        "task_create_missing_queues": False,
        "worker_hijack_root_logger": False,
        "beat_schedule_filename": str(Path(app.instance_path) / "celerybeat-schedule"),
        "beat_schedule": {
            "sweep": {"task": "lti_tool.sweep", "schedule": SWEEP_EVERY,
                      "options": {"queue": jobs.SHORT, "expires": SWEEP_EVERY}},
            "audit-prune": {"task": "lti_tool.scheduled", "args": ["audit.prune"],
                            "schedule": crontab(hour=3, minute=17),
                            "options": {"queue": jobs.SHORT}},
            "uploads-cleanup": {"task": "lti_tool.scheduled", "args": ["uploads.cleanup"],
                                "schedule": timedelta(hours=1),
                                "options": {"queue": jobs.SHORT}},
            "platform-keys": {"task": "lti_tool.scheduled", "args": ["platforms.refresh_keys"],
                              "schedule": timedelta(hours=6),
                              "options": {"queue": jobs.SHORT}},
            "cache-sweep": {"task": "lti_tool.scheduled", "args": ["cache.sweep"],
                            "schedule": timedelta(minutes=15),
                            "options": {"queue": jobs.SHORT}},
            "jobs-forget": {"task": "lti_tool.scheduled", "args": ["jobs.forget"],
                            "schedule": crontab(hour=3, minute=47),
                            "options": {"queue": jobs.SHORT}},
        },
    }


def celery_init_app(app: Flask) -> Celery:
    """The Celery app for this Flask app (Flask's documented pattern): every task runs inside
    an app context."""

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.import_name, task_cls=FlaskTask)
    celery.config_from_object(celery_config(app))
    celery.set_default()
    app.extensions["celery"] = celery
    app.config["JOB_TIME_LIMITS"] = time_limits(app.config)

    @worker_process_init.connect(weak=False)
    def fresh_connections(**kwargs: object) -> None:
        # A forked pool process must not share the parent's database connections.
        with app.app_context():
            db.engine.dispose(close=False)

    return celery


@shared_task(name="lti_tool.run_job", ignore_result=True)
def run_job(job_id: int) -> None:
    """Run one job of the ledger (the message carries only its id)."""
    jobs.run(job_id)


@shared_task(name="lti_tool.sweep", ignore_result=True)
def sweep() -> None:
    jobs.sweep()


@shared_task(name="lti_tool.scheduled", ignore_result=True)
def scheduled(kind: str) -> None:
    """A periodic job: recorded in the ledger like any other, one at a time."""
    jobs.submit(kind, subject=kind)
