"""The application skeleton: configuration, health check, headers, cookies, proxies, errors."""

import os
import stat

import pytest
from flask import request, session
from sqlalchemy import text

from lti_tool import create_app
from lti_tool.config import ConfigError, from_env
from lti_tool.extensions import cache, db

from .server import free_port


def test_blueprints_are_registered(app):
    assert {"launch", "admin", "audit", "health"} <= set(app.blueprints)


def test_healthz_answers_ok_when_the_database_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "cache": "ok"}
    assert "no-store" in response.headers["Cache-Control"]


def test_healthz_answers_503_when_the_database_does_not(instance_path, tmp_path):
    unreachable = f"sqlite:///{tmp_path / 'no-such-folder' / 'db.sqlite3'}"
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": unreachable})
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert response.json["database"] == "unreachable"


def test_secret_key_is_generated_once_into_the_instance_folder(instance_path):
    first = create_app().config["SECRET_KEY"]
    second = create_app().config["SECRET_KEY"]
    key_file = os.path.join(instance_path, "secret_key")
    assert first == second and len(first) >= 64
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_secret_key_from_the_environment_wins(instance_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    assert create_app().config["SECRET_KEY"] == "from-the-environment"
    assert not os.path.exists(os.path.join(instance_path, "secret_key"))


def test_defaults_live_in_the_instance_folder(instance_path):
    config = from_env(instance_path, {})
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{instance_path}/lti_tool.sqlite3"
    assert config["MEDIA_ROOT"] == f"{instance_path}/media"
    assert config["CACHE_TYPE"] == "lti_tool.cache_backends.SharedFileSystemCache"
    assert config["TRUSTED_PROXIES"] == 0


def test_environment_settings_are_read(instance_path):
    config = from_env(
        instance_path,
        {
            "DATABASE_URL": "postgresql://tool@db.example.edu/lti",
            "REDIS_URL": "redis://cache.example.edu:6379/2",
            "MEDIA_ROOT": "/srv/media",
            "TRUSTED_PROXIES": "2",
            "SECRET_KEY": "s3cret",
        },
    )
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://tool@db.example.edu/lti"
    assert config["CACHE_TYPE"] == "lti_tool.cache_backends.AtomicRedisCache"
    assert config["CACHE_REDIS_URL"] == "redis://cache.example.edu:6379/2"
    assert config["MEDIA_ROOT"] == "/srv/media"
    assert config["TRUSTED_PROXIES"] == 2


@pytest.mark.parametrize("value", ["two", "-1", "1.5"])
def test_bad_proxy_count_is_a_clear_error(instance_path, value):
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        from_env(instance_path, {"TRUSTED_PROXIES": value, "SECRET_KEY": "x"})


def test_shared_cache_is_seen_by_another_worker(app, instance_path):
    """Launch state written by one worker process must be readable by the next one."""
    other_worker = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})
    from lti_tool.extensions import cache

    cache.set("state-abc", {"nonce": "n-1"})
    with other_worker.app_context():
        assert cache.get("state-abc") == {"nonce": "n-1"}
    cache.delete("state-abc")


@pytest.fixture
def session_app(migrated, instance_path, monkeypatch):
    """An app with one extra page that writes the session, as sign-in and launches will."""

    def make(**env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": migrated})

        @app.get("/_probe")
        def probe():
            session["seen"] = True
            return {"remote_addr": request.remote_addr, "scheme": request.scheme}

        return app

    return make


def _session_cookie(response) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if "lti_tool_session=" in c]
    assert len(cookies) == 1
    return cookies[0]


def test_https_cookies_work_inside_an_lms_iframe(session_app):
    client = session_app(TRUSTED_HOSTS="tool.example.edu").test_client()
    cookie = _session_cookie(client.get("/_probe", base_url="https://tool.example.edu"))
    assert "; Secure" in cookie
    assert "SameSite=None" in cookie
    assert "; Partitioned" in cookie
    assert "HttpOnly" in cookie


def test_plain_http_on_loopback_gets_lax_cookies_for_development(session_app):
    client = session_app().test_client()
    cookie = _session_cookie(client.get("/_probe", base_url="http://127.0.0.1:5000"))
    assert "Secure" not in cookie
    assert "SameSite=Lax" in cookie
    assert "Partitioned" not in cookie


def test_behind_a_tls_proxy_the_scheme_comes_from_the_trusted_proxy(session_app):
    client = session_app(TRUSTED_PROXIES="1").test_client()
    response = client.get(
        "/_probe",
        base_url="http://127.0.0.1:8000",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"},
    )
    assert response.json == {"remote_addr": "203.0.113.7", "scheme": "https"}
    cookie = _session_cookie(response)
    assert "; Secure" in cookie and "SameSite=None" in cookie and "Partitioned" in cookie


def test_forwarded_headers_are_ignored_without_trusted_proxies(session_app):
    client = session_app().test_client()
    response = client.get(
        "/_probe",
        base_url="http://127.0.0.1:8000",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"},
    )
    assert response.json == {"remote_addr": "127.0.0.1", "scheme": "http"}
    assert "Secure" not in _session_cookie(response)


def test_only_the_configured_number_of_proxies_is_trusted(session_app):
    client = session_app(TRUSTED_PROXIES="1").test_client()
    response = client.get(
        "/_probe", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
    )
    # The client wrote the first address itself; only the proxy's last hop counts.
    assert response.json["remote_addr"] == "203.0.113.7"


def test_pages_carry_security_headers_and_are_not_framable_by_default(client):
    response = client.get("/healthz")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


def test_unknown_page_is_a_readable_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert b"This page does not exist" in response.data
    assert b"Traceback" not in response.data


def test_a_fresh_instance_keeps_its_files_to_itself(instance_path, monkeypatch):
    """The SQLite database (with its WAL and shared-memory files) and the launch cache are
    readable by the tool's own user only."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = create_app()
    with app.app_context():
        db.session.execute(text("CREATE TABLE probe (x INTEGER)"))
        db.session.execute(text("INSERT INTO probe VALUES (1)"))
        db.session.commit()
        cache.set("probe", {"claims": "private"})
        database = db.engine.url.database
        files = [database, f"{database}-wal", f"{database}-shm"]
        cache_dir = app.config["CACHE_DIR"]
        files += [os.path.join(cache_dir, name) for name in os.listdir(cache_dir)]
        assert len(files) > 3, "the cache wrote a file"
        modes = {path: stat.S_IMODE(os.stat(path).st_mode) for path in files}
        db.session.remove()
        db.engine.dispose()
    assert {path: mode & 0o077 for path, mode in modes.items()} == dict.fromkeys(files, 0)
    assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(instance_path).st_mode) == 0o700


def test_healthz_is_degraded_when_the_cache_does_not_answer(migrated, instance_path):
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": migrated,
                      "CACHE_TYPE": "lti_tool.cache_backends.AtomicRedisCache",
                      "CACHE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    response = app.test_client().get("/healthz")
    assert response.status_code == 200, "the database answers: keep serving"
    assert response.json == {"status": "degraded", "database": "ok", "cache": "unavailable"}
    with app.app_context():
        db.engine.dispose()
