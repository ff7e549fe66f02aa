"""Lecture start: many first launches at the same moment, against the tool served by gunicorn."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import sqlalchemy as sa

from lti_tool.models import (
    Category,
    LTILaunchLog,
    LTIResourceLink,
    LTIUserMapping,
    RBACGroup,
    RBACMembership,
    User,
)

from .lms import http_launch
from .server import serve


@pytest.fixture
def served(app, lms, migrated, tmp_path):
    """The test database served by four gunicorn workers; `app` empties it afterwards."""
    with serve(migrated, tmp_path / "instance", workers=4) as base:
        yield base


def count(db, model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def launch_all(lms, base: str, overrides: list[dict], db) -> list[int]:
    barrier = threading.Barrier(len(overrides))

    def one(claims: dict) -> int:
        with requests.Session() as browser:
            return http_launch(lms, base, browser, barrier, **claims).status_code

    with ThreadPoolExecutor(max_workers=len(overrides)) as pool:
        statuses = list(pool.map(one, overrides))
    if set(statuses) != {200}:
        failures = db.session.scalars(
            sa.select(LTILaunchLog.error_message).where(LTILaunchLog.success.is_(False))
        ).all()
        print("failed launches:", failures)
    return statuses


def test_fifty_new_students_enter_a_new_course_at_once(served, lms, db):
    students = [{"sub": f"s{n}", "ext": {"user_username": f"student{n}"}} for n in range(50)]
    assert launch_all(lms, served, students, db) == [200] * 50
    db.session.expire_all()
    assert count(db, Category) == 1 and count(db, RBACGroup) == 1
    assert count(db, LTIUserMapping) == 50 and count(db, User) == 50
    assert count(db, RBACMembership) == 50
    [link] = db.session.scalars(sa.select(LTIResourceLink)).all()
    assert link.launch_count == 50
    assert count(db, LTILaunchLog) == 50


def test_ten_first_launches_of_one_new_student_make_one_account(served, lms, db):
    assert launch_all(lms, served, [{"sub": "same-student"}] * 10, db) == [200] * 10
    db.session.expire_all()
    assert count(db, User) == 1 and count(db, LTIUserMapping) == 1
    assert count(db, RBACMembership) == 1
    assert db.session.scalar(sa.select(LTIResourceLink.launch_count)) == 10
