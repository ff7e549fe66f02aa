"""Redis down: logins and launches answer a framed 503, nothing is half-written, /healthz says
degraded, and launches resume when Redis is back (a private redis-server on a free port)."""

import logging
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from lti_tool.models import (
    LTILaunchLog,
    LTIResourceLink,
    LTIUserMapping,
    RBACMembership,
    User,
)

from .conftest import csrf
from .server import free_port

REDIS_SERVER = shutil.which("redis-server")
UNAVAILABLE = "The media tool is temporarily unavailable"


class RedisServer:
    """A redis-server of the test's own, without persistence, that can be stopped, started
    again on the same port, or frozen."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        folder.mkdir()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # in case it was frozen
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    @contextmanager
    def down(self) -> Iterator[None]:
        """Stopped inside the block, started again (same port, empty) after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Accepting connections but never answering, as a hung server."""
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)


@pytest.fixture(autouse=True)
def redis_server(tmp_path, monkeypatch) -> Iterator[RedisServer]:
    """Before the app: the tool's cache is this server, with one-second timeouts."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path / "redis")
    server.start()
    monkeypatch.setenv("REDIS_URL", server.url)
    monkeypatch.setenv("REDIS_TIMEOUT", "1")
    try:
        yield server
    finally:
        server.stop()


def count(db, model) -> int:
    db.session.expire_all()
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def assert_unavailable_page(response, lms) -> None:
    """The tool's own 503 page, in the LMS's frame, telling people to come back."""
    assert response.status_code == 503
    text = response.get_data(as_text=True)
    assert UNAVAILABLE in text and "Try again in a minute" in text
    assert response.headers["Retry-After"] == "60"
    assert "frame-ancestors https://lms.example.edu" in response.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in response.headers


def warnings_in(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_launch_while_redis_is_down_writes_nothing_and_says_so(
    browser, lms, db, redis_server, caplog
):
    login = lms.login(browser)  # while Redis is up: the login's state is stored
    token = lms.sign(lms.claims(nonce=login.nonce))
    with redis_server.down(), caplog.at_level(logging.INFO):
        response = browser.post("/lti/launch", data={"id_token": token, "state": login.state})
    assert_unavailable_page(response, lms)
    for model in (User, LTIUserMapping, LTIResourceLink, RBACMembership):
        assert count(db, model) == 0, model
    [entry] = db.session.scalars(sa.select(LTILaunchLog)).all()
    assert not entry.success and entry.error_category == "tool_unavailable"
    assert entry.platform_id == lms.platform.id and entry.claims["sub"] == "318"
    with browser.session_transaction() as session:
        assert "_user_id" not in session
    [warning] = warnings_in(caplog)
    assert "Redis" in warning.getMessage() and "/lti/launch" in warning.getMessage()
    assert warning.exc_info is None  # one line, no stack trace


def test_a_login_while_redis_is_down_gets_the_page_in_the_lms_frame(browser, lms, db,
                                                                    redis_server):
    with redis_server.down():
        login = lms.login(browser)  # the cookie check page, then the step that needs Redis
    assert_unavailable_page(login.response, lms)
    [entry] = db.session.scalars(sa.select(LTILaunchLog)).all()
    assert entry.error_category == "tool_unavailable" and entry.platform_id == lms.platform.id


def test_healthz_says_degraded_and_keeps_the_host_in_rotation(client, redis_server):
    assert client.get("/healthz").json == {"status": "ok", "database": "ok", "cache": "ok"}
    with redis_server.down():
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "degraded", "database": "ok", "cache": "unavailable"}
    assert client.get("/healthz").json["status"] == "ok"


def test_launches_resume_when_redis_returns(browser, lms, db, redis_server):
    assert lms.launch(browser).status_code == 200
    with redis_server.down():
        assert lms.login(browser).response.status_code == 503
    # The same port, no restart of the tool: the next login and launch go through.
    response = lms.launch(browser)
    assert response.status_code == 200
    assert response.headers["Content-Location"].startswith("/media/")
    assert count(db, User) == 1
    assert [e.success for e in db.session.scalars(
        sa.select(LTILaunchLog).order_by(LTILaunchLog.id))] == [True, False, True]


def test_a_hung_redis_gets_the_page_instead_of_holding_the_worker(browser, lms, redis_server):
    answers = []
    with redis_server.frozen():
        # If the tool waited on Redis for ever, the request would never end.
        request = threading.Thread(target=lambda: answers.append(lms.login(browser).response))
        request.start()
        request.join(timeout=60)
    request.join(timeout=60)
    [response] = answers
    assert_unavailable_page(response, lms)


def test_other_pages_that_need_redis_answer_503_too(client, make_user, redis_server):
    make_user("root", password="long-password-1")
    page = client.get("/admin/login")
    with redis_server.down():
        response = client.post("/admin/login", data={
            "username": "root", "password": "long-password-1", "csrf_token": csrf(page)})
    assert response.status_code == 503
    assert UNAVAILABLE in response.get_data(as_text=True)
    assert response.headers["Retry-After"] == "60"
