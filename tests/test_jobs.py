"""The jobs ledger: one active job per subject, exclusive claims, retries with backoff, the sweep
that rescues jobs of stopped workers, and what admins see of the queues."""

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from lti_tool.models import Job, JobState
from lti_tool.services import jobs

from .conftest import csrf

RAN: list[tuple[int, dict]] = []


@jobs.handler("test.record", queue=jobs.SHORT)
def _record(context: jobs.Context) -> None:
    RAN.append((context.job_id, context.args))


@jobs.handler("test.flaky", queue=jobs.SHORT)
def _flaky(context: jobs.Context) -> None:
    raise jobs.Transient("The platform answered 503")


@jobs.handler("test.broken", queue=jobs.LONG)
def _broken(context: jobs.Context) -> None:
    raise ValueError("a bug")


@pytest.fixture(autouse=True)
def _forget_runs():
    RAN.clear()


def test_a_subject_has_one_active_job_and_a_job_runs_once(db):
    first = jobs.enqueue("test.record", subject="thing:1", args={"n": 1})
    again = jobs.enqueue("test.record", subject="thing:1", args={"n": 2})
    db.session.commit()
    assert again.id == first.id
    assert jobs.run(first.id) is True
    assert jobs.run(first.id) is False, "a second delivery of the same job does nothing"
    assert RAN == [(first.id, {"n": 1})]
    job = db.session.get(Job, first.id, populate_existing=True)
    assert job.state is JobState.DONE and job.attempts == 1 and job.progress == 100
    later = jobs.enqueue("test.record", subject="thing:1")
    assert later.id != first.id, "once done, the subject may be worked on again"


def test_the_database_refuses_a_second_active_job_for_a_subject(db):
    db.session.add(Job(kind="test.record", queue="short", subject="thing:2", args={}))
    db.session.commit()
    db.session.add(Job(kind="test.record", queue="short", subject="thing:2", args={}))
    with pytest.raises(sa.exc.IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_parallel_claims_give_a_job_to_one_worker(app, db):
    job = jobs.enqueue("test.record")
    db.session.commit()
    winners: list[str] = []
    start = threading.Barrier(6)

    def claim(name: str) -> None:
        with app.app_context():
            start.wait()
            if jobs.claim(job.id, name) is not None:
                winners.append(name)
            db.session.remove()

    threads = [threading.Thread(target=claim, args=(f"worker-{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_a_transient_error_is_retried_with_backoff_then_fails(db):
    job = jobs.enqueue("test.flaky", subject="thing:3")
    db.session.commit()
    delays = []
    for attempt in range(1, jobs.MAX_ATTEMPTS + 1):
        assert jobs.run(job.id)
        job = db.session.get(Job, job.id, populate_existing=True)
        assert job.attempts == attempt
        if attempt < jobs.MAX_ATTEMPTS:
            assert job.state is JobState.WAITING and "503" in job.error
            delays.append((job.run_after - jobs.utcnow()).total_seconds())
            assert jobs.run(job.id) is False, "not before its backoff has passed"
            job.run_after = jobs.utcnow() - timedelta(seconds=1)
            db.session.commit()
    assert job.state is JobState.FAILED and "gave up after 3 attempts" in job.error
    assert delays[0] < delays[1], "each retry waits longer"


def test_an_unexpected_error_fails_the_job_with_its_reason(db):
    job = jobs.enqueue("test.broken")
    db.session.commit()
    jobs.run(job.id)
    job = db.session.get(Job, job.id, populate_existing=True)
    assert job.state is JobState.FAILED and job.error == "ValueError: a bug"
    assert job.finished_at is not None


def test_the_sweep_puts_back_a_job_whose_worker_stopped(db):
    job = jobs.enqueue("test.record", subject="thing:4")
    db.session.commit()
    assert jobs.claim(job.id, "host-a:1") is not None  # ... and host-a is switched off
    assert jobs.sweep()["requeued"] == 0, "a fresh heartbeat is left alone"
    later = jobs.utcnow() + jobs.STALE_AFTER + timedelta(seconds=1)
    done = jobs.sweep(now=later)
    assert done["requeued"] == 1 and done["resent"] == 1
    job = db.session.get(Job, job.id, populate_existing=True)
    assert job.state is JobState.WAITING and "host-a:1 stopped" in job.error
    assert jobs.run(job.id, worker="host-b:1")
    assert RAN and db.session.get(Job, job.id, populate_existing=True).state is JobState.DONE


def test_a_job_that_keeps_killing_its_worker_fails_instead_of_looping(db):
    job = jobs.enqueue("test.record")
    db.session.commit()
    now = jobs.utcnow()
    for n in range(jobs.MAX_ATTEMPTS):
        assert jobs.claim(job.id, f"host:{n}") is not None
        now += jobs.STALE_AFTER + timedelta(seconds=1)
        jobs.sweep(now=now)
    job = db.session.get(Job, job.id, populate_existing=True)
    assert job.state is JobState.FAILED and "gave up after 3 attempts" in job.error
    assert RAN == []


def test_a_job_the_broker_never_got_is_sent_again(db, app):
    job = jobs.enqueue("test.record")
    db.session.commit()  # ... and the web process died before dispatching it
    assert jobs.sweep()["resent"] == 1
    job = db.session.get(Job, job.id, populate_existing=True)
    assert job.dispatched_at is not None
    assert jobs.sweep()["resent"] == 0, "once handed over, it is not sent again and again"


def test_a_heartbeat_from_a_worker_that_lost_its_job_stops_the_handler(app, db):
    job = jobs.enqueue("test.record")
    db.session.commit()
    jobs.claim(job.id, "host-a:1")
    beat = jobs._Heartbeat(app, job.id, "host-a:1")
    beat.beat()
    assert not beat.lost
    db.session.execute(sa.update(Job).where(Job.id == job.id).values(worker="host-b:1"))
    db.session.commit()
    beat.beat()
    context = jobs.Context(job.id, {}, 1, beat)
    with pytest.raises(jobs.JobLost):
        context.progress(50)


def test_queue_figures_and_retry_of_a_failed_job(db):
    jobs.enqueue("test.record")
    running = jobs.enqueue("test.record")
    broken = jobs.enqueue("test.broken", subject="thing:5")
    db.session.commit()
    jobs.claim(running.id, "host:1")
    jobs.run(broken.id)
    figures = {f.queue: f for f in jobs.queue_figures()}
    assert (figures["short"].waiting, figures["short"].running) == (1, 1)
    assert figures["long"].failed_recently == 1
    assert [j.id for j in jobs.recent_failures()] == [broken.id]
    again = jobs.retry(db.session.get(Job, broken.id))
    db.session.commit()
    assert again.id != broken.id and again.state is JobState.WAITING
    assert again.subject == "thing:5"


def _failed_job(db) -> Job:
    job = jobs.enqueue("test.broken", subject="thing:9")
    db.session.commit()
    jobs.run(job.id)
    return db.session.get(Job, job.id, populate_existing=True)


def test_admins_see_the_queues_and_retry_a_failed_job(admin, db):
    failed = _failed_job(db)
    jobs.enqueue("test.record")
    db.session.commit()
    page = admin.get("/admin/")
    text = page.get_data(as_text=True)
    assert "Background jobs" in text and "ValueError: a bug" in text
    assert "No job is running." in text
    refused = admin.post(f"/admin/jobs/{failed.id}/retry")
    assert refused.status_code == 400, "the retry button carries a CSRF token"
    response = admin.post(f"/admin/jobs/{failed.id}/retry", data={"csrf_token": csrf(page)})
    assert response.status_code == 303
    again = jobs.active_job("thing:9")
    assert again is not None and again.id != failed.id
    assert f"Queued test.broken again (job {again.id})" in admin.get("/admin/").get_data(
        as_text=True)


def test_jobs_status_prints_the_queues_and_failures(runner, db):
    _failed_job(db)
    jobs.enqueue("test.record")
    db.session.commit()
    result = runner.invoke(args=["jobs", "status"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:2] == ["Queue", "Waiting"]
    assert lines[1].split() == ["short", "1", "0", "0", "0"]
    assert lines[2].split() == ["long", "0", "0", "1", "0"]
    assert "ValueError: a bug" in result.output


def test_jobs_retry_refuses_a_job_that_did_not_fail(runner, db):
    job = jobs.enqueue("test.record")
    db.session.commit()
    result = runner.invoke(args=["jobs", "retry", str(job.id)])
    assert result.exit_code == 2 and result.output.startswith("Error: ")
