"""Settings read once from the environment, with defaults placed in the instance folder."""

import os
import re
import secrets
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

SECRET_KEY_FILE = "secret_key"
# Host names a request may name when no other is configured: `make run` on this machine.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")


class ConfigError(RuntimeError):
    """A setting in the environment has a value the tool cannot use."""


def from_env(instance_path: str, environ: os._Environ | dict | None = None) -> dict[str, Any]:
    """Build the Flask config mapping from environment variables.

    Defaults that depend on the instance folder (the SQLite file, the media root, the generated
    secret key, the file cache) are computed here from `instance_path`, never at import time.
    """
    env = os.environ if environ is None else environ
    instance = Path(instance_path)
    redis_url = env.get("REDIS_URL") or None

    database = database_url(env.get("DATABASE_URL") or f"sqlite:///{instance / 'lti_tool.sqlite3'}")
    config: dict[str, Any] = {
        "SECRET_KEY": env.get("SECRET_KEY") or _instance_secret_key(instance),
        "SQLALCHEMY_DATABASE_URI": database,
        # A server connection may have been dropped while idle: one idle for a while is tested
        # before use (extensions.py), not every one: that would add a round trip per request.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": False},
        "REDIS_URL": redis_url,
        "MEDIA_ROOT": env.get("MEDIA_ROOT") or str(instance / "media"),
        # nginx's `internal` location aliasing MEDIA_ROOT: it sends the media files (README).
        "MEDIA_ACCEL_REDIRECT": _location(env, "MEDIA_ACCEL_REDIRECT"),
        "MAX_UPLOAD_BYTES": _int(env, "MAX_UPLOAD_MB", 2048) * 1024 * 1024,
        "TRUSTED_PROXIES": _int(env, "TRUSTED_PROXIES", 0),
        **public_address(env.get("PUBLIC_BASE_URL", ""), env.get("TRUSTED_HOSTS", "")),
        "SESSION_COOKIE_NAME": "lti_tool_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=_int(env, "SESSION_HOURS", 8)),
        "LOG_LEVEL": env.get("LOG_LEVEL", "INFO").upper(),
        "AUDIT_RETENTION_DAYS": _int(env, "AUDIT_RETENTION_DAYS", 90) or 90,
        # Development mode: the admin accepts plain-http platform URLs on any host.
        "DEVELOPMENT": env.get("LTI_TOOL_DEVELOPMENT", "").lower() in ("1", "true", "yes"),
        # A platform's keyset fetch waits this long; it blocks only the launch that needs it.
        "JWKS_FETCH_TIMEOUT": _int(env, "JWKS_FETCH_TIMEOUT", 5) or 5,
        # Seconds before the same unknown kid may make the tool fetch a platform's keys again.
        "JWKS_REFRESH_INTERVAL": _int(env, "JWKS_REFRESH_INTERVAL", 30) or 30,
        # Background jobs: RabbitMQ (amqp://...) here; else Redis (REDIS_URL); else a SQLite
        # file in the instance folder (worker.py).
        "CELERY_BROKER_URL": env.get("CELERY_BROKER_URL") or None,
        # Minutes one transcode may take before it is stopped and marked failed.
        "TRANSCODE_TIME_LIMIT": (_int(env, "TRANSCODE_TIME_LIMIT_MINUTES", 240) or 240) * 60,
        # Hours after which a teacher's launch queues a roster (NRPS) sync of the course.
        "NRPS_SYNC_MAX_AGE": _int(env, "NRPS_SYNC_MAX_AGE", 24) or 24,
        # Hours an unfinished resumable upload is kept before the upkeep job removes it.
        "UPLOAD_EXPIRY_HOURS": _int(env, "UPLOAD_EXPIRY_HOURS", 24) or 24,
        # LTI Dynamic Registration (/lti/register): on unless switched off. Registrations from
        # these issuers (host names or issuer URLs, space-separated) are active at once; others
        # wait for an admin's approval.
        "REGISTRATION_ENABLED": _flag(env, "REGISTRATION_ENABLED", True),
        "REGISTRATION_TRUSTED_ISSUERS": env.get("REGISTRATION_TRUSTED_ISSUERS", "").split(),
        # Lets registration fetch http(s) URLs on loopback addresses (an LMS on this machine).
        "REGISTRATION_ALLOW_LOOPBACK": _flag(env, "REGISTRATION_ALLOW_LOOPBACK", False),
        # Rows the platform inbox keeps (refusals from unknown platforms); the oldest go first.
        "INBOX_MAX_ROWS": _int(env, "INBOX_MAX_ROWS", 500) or 500,
    }
    # Launch state, nonces and launch data must be seen by every worker process:
    # Redis in production, otherwise a file cache in the instance folder (one host only).
    if redis_url:
        config |= {
            "CACHE_TYPE": "lti_tool.cache_backends.AtomicRedisCache",
            "CACHE_REDIS_URL": redis_url,
            # A Redis that hangs must not hold the workers: seconds per attempt, one retry.
            "CACHE_OPTIONS": _redis_options(_int(env, "REDIS_TIMEOUT", 2) or 2),
        }
    else:
        config |= {
            "CACHE_TYPE": "lti_tool.cache_backends.SharedFileSystemCache",
            "CACHE_DIR": str(instance / "cache"),
        }
    config["CACHE_DEFAULT_TIMEOUT"] = 300
    config["CACHE_KEY_PREFIX"] = env.get("CACHE_KEY_PREFIX", "lti_tool:")
    return config


def public_address(base_url: str, trusted_hosts: str) -> dict[str, Any]:
    """PUBLIC_BASE_URL (the origin people and platforms use) and the host names accepted.

    Every absolute URL is built from PUBLIC_BASE_URL when it is set. A request naming a host
    outside TRUSTED_HOSTS (a comma-separated list; a leading dot admits subdomains) is refused:
    by default the public host and this machine's loopback names.
    """
    base_url = base_url.strip().rstrip("/")
    hosts = [h.strip().lower() for h in trusted_hosts.split(",") if h.strip()]
    if base_url:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or (
            parts.path or parts.query or parts.fragment or parts.username
        ):
            raise ConfigError(
                f"PUBLIC_BASE_URL must be an origin such as https://media.example.edu, "
                f"not {base_url!r}"
            )
        hosts = [parts.hostname, *(hosts or LOOPBACK_HOSTS)]
    return {"PUBLIC_BASE_URL": base_url or None, "TRUSTED_HOSTS": hosts or list(LOOPBACK_HOSTS)}


def private_instance_files(config: Mapping[str, Any]) -> None:
    """Create the SQLite file (0600) and the file cache's folder (0700) before anything opens them.

    SQLite gives its -wal and -shm files the database file's mode; the cache writes its files
    0600. Files that already exist keep their mode; a missing database folder stays missing.
    """
    url = make_url(config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" and (
        not url.database.startswith("file:")
    ):
        path = Path(url.database)
        if path.parent.is_dir():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    if config.get("CACHE_DIR"):
        Path(config["CACHE_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)


def database_url(url: str) -> str:
    """Use the psycopg 3 driver for PostgreSQL URLs given without a driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def _location(env, name: str) -> str | None:
    value = env.get(name) or None
    if value is not None and not re.fullmatch(r"/([\w~-][\w.~-]*/)+", value):
        raise ConfigError(f"{name} must be a URL path starting and ending with /, "
                          f"such as /internal-media/, not {value!r}")
    return value


def _redis_options(seconds: int) -> dict[str, Any]:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {"socket_connect_timeout": seconds, "socket_timeout": seconds,
            "retry": Retry(NoBackoff(), 1)}


def _flag(env, name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0, not {raw!r}")


def _int(env, name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


def _instance_secret_key(instance: Path) -> str:
    """Read the secret key kept in the instance folder, creating it (mode 0600) on first run.

    The key is written to a temporary file and linked into place, so workers starting at the
    same moment never read a half-written file and all end up with the same key.
    """
    path = instance / SECRET_KEY_FILE
    if not path.exists():
        instance.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = instance / f".{SECRET_KEY_FILE}.{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_text().strip()
    if not key:
        raise ConfigError(f"{path} is empty: delete it to generate a new key, or set SECRET_KEY")
    return key
