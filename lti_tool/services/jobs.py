"""Background jobs: the tool's own ledger of work, run by Celery workers.

The `job` table is the source of truth; the broker only carries a job's id to a worker. A
worker claims a job with one conditional UPDATE (so two workers never run the same job), writes
a heartbeat while it runs, and marks it done or failed. A scheduled sweep puts back on the queue
any job whose heartbeat stopped (a killed worker, a rebooted host: kombu's SQLite transport
never re-delivers such a task, Redis only after its visibility timeout), and hands the broker
again any job it never received. At most one job per subject (``media:42``) is waiting or
running: a partial unique index says so to both databases.

Handlers are registered with `@handler(kind, queue)` and receive a `Context`. A handler must be
idempotent: a job that was killed midway runs again from the start.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import ACTIVE_JOB_STATES, Job, JobState

log = logging.getLogger(__name__)

SHORT = "short"  # roster syncs, key refresh, previews, upkeep: minutes at most
LONG = "long"  # transcodes: up to TRANSCODE_TIME_LIMIT
QUEUES = (SHORT, LONG)
HEARTBEAT_SECONDS = 10  # a running job writes its heartbeat this often
STALE_AFTER = timedelta(seconds=90)  # no heartbeat for this long: the worker is gone
RESEND_AFTER = timedelta(minutes=10)  # waiting, and never received by a worker this long
MAX_ATTEMPTS = 3  # runs of one job (crashes included) before it counts as failed
BACKOFF = (30, 120, 600)  # seconds before the 2nd, 3rd, ... attempt after a transient error
RECENT = timedelta(days=1)  # the dashboard's "failed in the last day"


class Transient(Exception):
    """A handler's error worth another attempt later (a platform down, a full disk)."""


class JobLost(Exception):
    """The job is no longer this worker's (the sweep gave it to another): stop quietly."""


@dataclass
class Handler:
    kind: str
    queue: str
    run: Callable[[Context], None]
    # Called when the job has failed for good, with the error (None when its worker kept
    # dying) and the reason recorded; its changes are committed with the job's new state.
    failed: Callable[[Job, Exception | None, str], None] | None = None
    # Puts the job's work back on the queue (the admin's retry), when that means more than a
    # new job with the same arguments (e.g. the media item shows "queued" again).
    requeue: Callable[[dict[str, Any]], Job | None] | None = None


HANDLERS: dict[str, Handler] = {}


def handler(kind: str, queue: str = SHORT,
            failed: Callable[[Job, Exception | None, str], None] | None = None,
            requeue: Callable[[dict[str, Any]], Job | None] | None = None):
    """Register the function run for jobs of `kind`."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")

    def register(function: Callable[[Context], None]) -> Callable[[Context], None]:
        HANDLERS[kind] = Handler(kind, queue, function, failed, requeue)
        return function

    return register


def utcnow() -> datetime:
    return datetime.now(UTC)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# Adding and handing out jobs -------------------------------------------------------------------


def enqueue(kind: str, *, subject: str | None = None, args: dict[str, Any] | None = None,
            run_after: datetime | None = None) -> Job:
    """Add a waiting job (flushed; the caller commits, then calls `dispatch(job)`).

    If a job for the same subject is already waiting or running, that job is returned instead:
    work on one subject never runs twice at once.
    """
    spec = HANDLERS[kind]
    if subject is not None:
        active = active_job(subject)
        if active is not None:
            return active
    job = Job(kind=kind, queue=spec.queue, subject=subject, args=args or {},
              state=JobState.WAITING, run_after=run_after)
    try:
        with db.session.begin_nested():
            db.session.add(job)
    except IntegrityError:
        # Another request added the subject's job between our look and our insert.
        active = active_job(subject)
        if active is None:
            raise
        return active
    return job


def active_job(subject: str) -> Job | None:
    return db.session.scalar(
        select(Job).where(Job.subject == subject, Job.state.in_(ACTIVE_JOB_STATES))
    )


def dispatch(*jobs: Job | None) -> None:
    """Hand committed waiting jobs to the broker. Never raises: a job the broker did not take
    stays waiting, and the sweep sends it again."""
    for job in jobs:
        if job is None or job.state is not JobState.WAITING:
            continue
        try:
            _send(job.id, job.queue, job.run_after)
        except Exception as e:  # the broker is down or unreachable
            log.warning("Job %s not handed to the broker yet (%s): the sweep retries",
                        job.id, type(e).__name__)
            continue
        db.session.execute(update(Job).where(Job.id == job.id).values(dispatched_at=utcnow()))
    db.session.commit()


def _send(job_id: int, queue: str, run_after: datetime | None) -> None:
    celery = current_app.extensions["celery"]
    countdown = max(0.0, (run_after - utcnow()).total_seconds()) if run_after else None
    soft, hard = current_app.config["JOB_TIME_LIMITS"][queue]
    celery.send_task("lti_tool.run_job", args=[job_id], queue=queue, countdown=countdown,
                     soft_time_limit=soft, time_limit=hard)


def submit(kind: str, *, subject: str | None = None, args: dict[str, Any] | None = None) -> Job:
    """Enqueue, commit and dispatch in one go (for commands and scheduled work)."""
    job = enqueue(kind, subject=subject, args=args)
    db.session.commit()
    dispatch(job)
    return job


# Running a job ---------------------------------------------------------------------------------


@dataclass
class Context:
    """What a handler gets: its job's arguments, a way to report progress, and a place for
    work that must wait until its results are committed.

    What a handler leaves flushed but uncommitted is committed together with the job's "done":
    a worker killed between the two can never leave finished work marked as running.
    """

    job_id: int
    args: dict[str, Any]
    attempt: int
    _beat: _Heartbeat = field(repr=False)
    _after: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run `action` once the job's results and its "done" are committed (e.g. remove the
        files the results replace)."""
        self._after.append(action)

    def progress(self, percent: int) -> None:
        """Record progress (written with the next heartbeat); raises JobLost if the job was
        taken away from this worker."""
        self._beat.progress = max(0, min(100, int(percent)))
        if self._beat.lost:
            raise JobLost(f"job {self.job_id} was given to another worker")


class _Heartbeat(threading.Thread):
    """Writes the job's heartbeat and progress every HEARTBEAT_SECONDS on its own connection,
    so a long step without progress (an HLS rung, a slow platform) still counts as alive."""

    def __init__(self, app, job_id: int, worker: str) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.app, self.job_id, self.worker = app, job_id, worker
        self.progress: int | None = None
        self.lost = False
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_SECONDS):
            self.beat()

    def beat(self) -> None:
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        if self.progress is not None:
            values["progress"] = self.progress
        try:
            with self.app.app_context(), db.engine.begin() as conn:
                result = conn.execute(
                    update(Job).where(Job.id == self.job_id, Job.state == JobState.RUNNING,
                                      Job.worker == self.worker).values(**values))
            if result.rowcount == 0:
                self.lost = True
        except Exception as e:  # a database hiccup: the next beat tries again
            log.warning("Heartbeat of job %s not written: %s", self.job_id, type(e).__name__)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


def claim(job_id: int, worker: str) -> Job | None:
    """Take a waiting job for this worker (committed); None if it is not waiting (done, running
    elsewhere, deleted) or not due yet. One conditional UPDATE: only one worker wins."""
    now = utcnow()
    result = db.session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.WAITING,
               or_(Job.run_after.is_(None), Job.run_after <= now))
        .values(state=JobState.RUNNING, worker=worker, attempts=Job.attempts + 1,
                started_at=now, heartbeat_at=now, progress=0, error="")
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if result.rowcount != 1:
        return None
    job = db.session.get(Job, job_id, populate_existing=True)
    return job


def run(job_id: int, worker: str | None = None) -> bool:
    """Claim a job and run its handler here: what a worker does with a job id. Returns whether
    this call ran it. Safe to call for any id, any number of times (idempotent)."""
    worker = worker or worker_name()
    job = claim(job_id, worker)
    if job is None:
        return False
    spec = HANDLERS.get(job.kind)
    beat = _Heartbeat(current_app._get_current_object(), job.id, worker)
    context = Context(job.id, dict(job.args or {}), job.attempts, beat)
    beat.start()
    try:
        if spec is None:
            raise LookupError(f"no handler for jobs of kind {job.kind!r}")
        spec.run(context)
    except JobLost:
        db.session.rollback()
        log.warning("Job %s was taken away from %s; stopped", job_id, worker)
        return True
    except Transient as e:
        db.session.rollback()
        _retry_later(job_id, worker, str(e) or type(e).__name__)
        return True
    except Exception as e:
        db.session.rollback()
        if getattr(e, "reason", None):  # an expected refusal, e.g. a file with no streams
            log.warning("Job %s (%s) failed: %s", job_id, job.kind, e.reason)
        else:
            log.exception("Job %s (%s) failed", job_id, job.kind)
        _fail(job_id, worker, _reason(e), e)
        return True
    finally:
        beat.stop()
    _finish(job_id, worker)
    for action in context._after:
        try:
            action()
        except Exception:
            log.exception("Job %s: a clean-up after its commit failed", job_id)
    return True


def _reason(error: Exception) -> str:
    if isinstance(error, SoftTimeLimitExceeded):
        return "It took longer than the time limit set for this kind of job."
    return getattr(error, "reason", None) or f"{type(error).__name__}: {error}"[:2000]


def _finish(job_id: int, worker: str) -> None:
    """Mark the job done, in one commit with what its handler left flushed."""
    db.session.execute(
        update(Job).where(Job.id == job_id, Job.worker == worker, Job.state == JobState.RUNNING)
        .values(state=JobState.DONE, progress=100, finished_at=utcnow(), heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _retry_later(job_id: int, worker: str, reason: str) -> None:
    job = db.session.get(Job, job_id, populate_existing=True)
    if job is None or job.worker != worker or job.state is not JobState.RUNNING:
        return
    if job.attempts >= MAX_ATTEMPTS:
        _fail(job_id, worker, f"{reason} (gave up after {job.attempts} attempts)")
        return
    delay = BACKOFF[min(job.attempts, len(BACKOFF)) - 1]
    job.state, job.error, job.worker = JobState.WAITING, reason, ""
    job.run_after = utcnow() + timedelta(seconds=delay)
    db.session.commit()
    log.warning("Job %s (%s) will try again in %d s: %s", job_id, job.kind, delay, reason)
    dispatch(job)


def _fail(job_id: int, worker: str | None, reason: str, error: Exception | None = None) -> None:
    job = db.session.get(Job, job_id, populate_existing=True)
    if job is None or (worker is not None and job.worker != worker):
        return
    job.state, job.error, job.finished_at = JobState.FAILED, reason, utcnow()
    spec = HANDLERS.get(job.kind)
    if spec and spec.failed:
        spec.failed(job, error, reason)
    db.session.commit()


def run_waiting(limit: int | None = None) -> int:
    """Run every waiting job that is due, here and now, oldest first; returns how many ran.
    For tests and for `flask jobs run`: production workers get their jobs from the broker."""
    ran = 0
    while limit is None or ran < limit:
        job_id = db.session.scalar(
            select(Job.id).where(Job.state == JobState.WAITING,
                                 or_(Job.run_after.is_(None), Job.run_after <= utcnow()))
            .order_by(Job.id).limit(1))
        if job_id is None or not run(job_id):
            break
        ran += 1
    return ran


# Upkeep and what admins see --------------------------------------------------------------------


def sweep(now: datetime | None = None) -> dict[str, int]:
    """Put back jobs whose worker stopped beating and resend jobs no worker received.

    A job that has already run MAX_ATTEMPTS times fails instead (a file that kills the
    worker every time must not loop forever). Commits; returns what it did.
    """
    now = now or utcnow()
    stale = list(db.session.scalars(
        select(Job).where(Job.state == JobState.RUNNING, Job.heartbeat_at < now - STALE_AFTER)
    ))
    requeued = failed = 0
    for job in stale:
        reason = (f"The worker {job.worker} stopped (no heartbeat since "
                  f"{job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC)")
        if job.attempts >= MAX_ATTEMPTS:
            _fail(job.id, job.worker, f"{reason}; gave up after {job.attempts} attempts")
            failed += 1
            continue
        # Conditional: the worker may have beaten in the meantime.
        taken = db.session.execute(
            update(Job).where(Job.id == job.id, Job.state == JobState.RUNNING,
                              Job.heartbeat_at < now - STALE_AFTER)
            .values(state=JobState.WAITING, worker="", error=reason, run_after=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.commit()
        if taken:
            log.warning("Job %s (%s) put back on the queue: %s", job.id, job.kind, reason)
            requeued += 1
    unsent = list(db.session.scalars(
        select(Job).where(
            Job.state == JobState.WAITING,
            or_(Job.run_after.is_(None), Job.run_after <= now),
            or_(Job.dispatched_at.is_(None), Job.dispatched_at < now - RESEND_AFTER,
                and_(Job.error != "", Job.dispatched_at < now - STALE_AFTER)),
        ).order_by(Job.id)
    ))
    db.session.expire_all()
    dispatch(*unsent)
    return {"requeued": requeued, "failed": failed, "resent": len(unsent)}


def retry(job: Job) -> Job | None:
    """A failed job again, as a new job (flushed; commit, then dispatch). None if its work
    is gone (e.g. the media item was deleted)."""
    spec = HANDLERS.get(job.kind)
    if spec is not None and spec.requeue is not None:
        return spec.requeue(dict(job.args or {}))
    return enqueue(job.kind, subject=job.subject, args=dict(job.args or {}))


def remove_finished(older_than: timedelta, now: datetime | None = None) -> int:
    """Forget done jobs older than `older_than` and failed ones older than twice that
    (flushed)."""
    now = now or utcnow()
    result = db.session.execute(
        Job.__table__.delete().where(or_(
            and_(Job.state == JobState.DONE, Job.finished_at < now - older_than),
            and_(Job.state == JobState.FAILED, Job.finished_at < now - 2 * older_than),
        ))
    )
    db.session.flush()
    return result.rowcount


@dataclass
class QueueFigures:
    queue: str
    waiting: int = 0
    running: int = 0
    failed_recently: int = 0
    done_recently: int = 0


def queue_figures(now: datetime | None = None) -> list[QueueFigures]:
    """Per queue: jobs waiting and running now, failed and done in the last day."""
    now = now or utcnow()
    figures = {q: QueueFigures(q) for q in QUEUES}
    counts = db.session.execute(
        select(Job.queue, Job.state, func.count()).where(or_(
            Job.state.in_(ACTIVE_JOB_STATES), Job.finished_at >= now - RECENT,
        )).group_by(Job.queue, Job.state)
    )
    for queue, state, count in counts:
        row = figures.setdefault(queue, QueueFigures(queue))
        name = {JobState.WAITING: "waiting", JobState.RUNNING: "running",
                JobState.FAILED: "failed_recently", JobState.DONE: "done_recently"}[state]
        setattr(row, name, count)
    return list(figures.values())


def running_jobs(limit: int = 20) -> list[Job]:
    return list(db.session.scalars(
        select(Job).where(Job.state == JobState.RUNNING).order_by(Job.started_at).limit(limit)))


def recent_failures(limit: int = 20, now: datetime | None = None) -> list[Job]:
    """Jobs that failed in the last day, newest first."""
    now = now or utcnow()
    return list(db.session.scalars(
        select(Job).where(Job.state == JobState.FAILED, Job.finished_at >= now - RECENT)
        .order_by(Job.finished_at.desc(), Job.id.desc()).limit(limit)))
