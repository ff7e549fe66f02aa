"""Shared fixtures: the app on a real database (SQLite, or TEST_DATABASE_URL), clients, builders."""

import os
import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask, g, has_app_context
from flask.testing import FlaskClient, FlaskCliRunner
from flask_migrate import upgrade

from lti_tool import create_app
from lti_tool.config import database_url
from lti_tool.extensions import cache
from lti_tool.extensions import db as _db
from lti_tool.models import GlobalRole, LTIPlatform, User

# Settings a developer's shell may hold that must not leak into the tests.
ISOLATED_ENV = ("SECRET_KEY", "DATABASE_URL", "MEDIA_ROOT", "TRUSTED_PROXIES", "INSTANCE_PATH",
                "PUBLIC_BASE_URL", "TRUSTED_HOSTS", "CELERY_BROKER_URL",
                "TRANSCODE_TIME_LIMIT_MINUTES", "UPLOAD_EXPIRY_HOURS", "NRPS_SYNC_MAX_AGE")
# The test client's default host, loopback, and the tool's site in the https tests.
TEST_HOSTS = ["localhost", "127.0.0.1", "tool.example.org"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the test item (`rep_call`): fixtures see whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def pytest_report_header(config) -> list[str]:
    return [
        f"database: {os.environ.get('TEST_DATABASE_URL') or 'SQLite (temporary file)'}",
        f"cache: {'Redis ' + os.environ['REDIS_URL'] if os.environ.get('REDIS_URL') else 'files'}",
    ]


@pytest.fixture(scope="session")
def database_uri(tmp_path_factory) -> str:
    """The test database, emptied and migrated to the newest schema once per session.

    With TEST_DATABASE_URL set an unreachable server fails the run: it is never skipped.
    """
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
    url = database_url(url)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    except sa.exc.OperationalError as e:
        pytest.fail(f"TEST_DATABASE_URL is set but the database is unreachable: {e}")
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def migrated(database_uri, tmp_path_factory) -> str:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INSTANCE_PATH", str(tmp_path_factory.mktemp("migrate-instance")))
        app = create_app({"SQLALCHEMY_DATABASE_URI": database_uri})
        with app.app_context():
            upgrade()
            _db.engine.dispose()
    return database_uri


@pytest.fixture
def instance_path(tmp_path, monkeypatch) -> str:
    for name in ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "instance"
    monkeypatch.setenv("INSTANCE_PATH", str(path))
    # Keys of this test run only: a shared Redis may hold a running tool's state.
    monkeypatch.setenv("CACHE_KEY_PREFIX", f"lti_tool_test_{os.getpid()}:")
    return str(path)


class FreshClient(FlaskClient):
    """A test client whose every request starts with an empty `g`, as in production.

    The `app` fixture keeps an app context open for the test body, and Flask reuses it for
    the client's requests; without this, `g` (Flask-Login's user, Flask-WTF's CSRF token,
    the framing policy) would carry over from one request to the next.
    """

    def open(self, *args, **kwargs):
        if has_app_context():
            g.__dict__.clear()
        return super().open(*args, **kwargs)


@pytest.fixture
def app(migrated, instance_path) -> Iterator[Flask]:
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": migrated,
                      "TRUSTED_HOSTS": TEST_HOSTS})
    app.test_client_class = FreshClient
    with app.app_context():
        cache.clear()
        yield app
        cache.clear()
        _db.session.remove()
        _empty_tables()
        _db.engine.dispose()


def _empty_tables() -> None:
    tables = [t for t in reversed(_db.metadata.sorted_tables)]
    with _db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(table.delete())
            # as RESTART IDENTITY does on PostgreSQL: the next test's ids start at 1 again
            conn.execute(sa.text("DELETE FROM sqlite_sequence"))


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def db(app):
    return _db


@pytest.fixture
def make_platform(db):
    """Builder: a committed platform; keyword arguments override the Moodle-like defaults."""
    counter = iter(range(1, 10_000))

    def make(**overrides) -> LTIPlatform:
        n = next(counter)
        site = overrides.pop("site", f"https://lms{n}.example.edu/moodle")
        values = {
            "name": f"Moodle {n}",
            "platform_id": site,
            "client_id": f"client-{n}",
            "auth_login_url": f"{site}/mod/lti/auth.php",
            "auth_token_url": f"{site}/mod/lti/token.php",
            "key_set_url": f"{site}/mod/lti/certs.php",
            "deployment_ids": ["1"],
        } | overrides
        platform = LTIPlatform(**values)
        db.session.add(platform)
        db.session.commit()
        return platform

    return make


@pytest.fixture
def make_user(db):
    """Builder: a committed user; a password makes it a local account."""
    counter = iter(range(1, 10_000))

    def make(username: str | None = None, password: str | None = None, **overrides) -> User:
        user = User(
            username=username or f"user{next(counter)}",
            global_role=overrides.pop("global_role", GlobalRole.USER),
            **overrides,
        )
        if password:
            user.set_password(password)
        db.session.add(user)
        db.session.commit()
        return user

    return make


@pytest.fixture
def lms(db):
    """A registered test LMS whose JWKS is served over HTTP on loopback."""
    from .lms import TestPlatform

    platform = TestPlatform()
    platform.register(db)
    yield platform
    platform.server.close()


class HttpsClient(FreshClient):
    """A test client whose requests go to https://tool.example.org unless told otherwise."""

    def open(self, *args, **kwargs):
        if not (args and not isinstance(args[0], str)):
            kwargs.setdefault("base_url", "https://tool.example.org")
        return super().open(*args, **kwargs)

    def session_transaction(self, *args, **kwargs):
        kwargs.setdefault("base_url", "https://tool.example.org")
        return super().session_transaction(*args, **kwargs)


@pytest.fixture
def browser(app) -> FlaskClient:
    """A browser reaching the tool over https, as inside an LMS iframe."""
    return HttpsClient(app, app.response_class, use_cookies=True)


def csrf(page) -> str:
    """The CSRF token of a rendered form (CSRF stays on in the tests)."""
    match = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data)
    return match.group(1).decode()


@pytest.fixture
def admin(client, make_user):
    """The client, signed in as an admin."""
    make_user("root", password="long-password-1", global_role=GlobalRole.ADMIN)
    page = client.get("/admin/login")
    client.post("/admin/login", data={"username": "root", "password": "long-password-1",
                                      "csrf_token": csrf(page)})
    return client
