"""Local user accounts."""

import functools
import logging
import re
import secrets

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from ..errors import ValidationError
from ..extensions import cache, db
from ..models import GlobalRole, User

log = logging.getLogger(__name__)

USERNAME_RE = re.compile(r"^[\w.@+-]{1,150}$")
MIN_PASSWORD_LENGTH = 8


def load_user(user_id: str, session_version: int | None) -> User | None:
    """The signed-in user, unless deactivated or their sessions were ended since this one
    began (`session_version` is the version the session recorded at sign-in)."""
    try:
        user = db.session.get(User, int(user_id))
    except (TypeError, ValueError):
        return None
    if user is None or not user.active or user.session_version != session_version:
        return None
    return user


def end_sessions(user: User) -> None:
    """End every existing session of this user, on every device (flushed): sign-out, a new
    password, deactivation or a lowered global role."""
    user.session_version = (user.session_version or 0) + 1
    db.session.flush()


def change_password(user: User, password: str) -> None:
    """Set a new password (flushed); the user's existing sessions end."""
    check_password_strength(password)
    user.set_password(password)
    end_sessions(user)


def get_user_by_username(username: str) -> User | None:
    return db.session.scalar(select(User).where(User.username == username))


@functools.cache
def _dummy_hash() -> str:
    """A hash made like the accounts' own, checked when there is no account to check."""
    return generate_password_hash(secrets.token_urlsafe(16))


def authenticate(username: str, password: str) -> User | None:
    """The active local account with this username and password, else None.

    A password hash is checked in every case, against a dummy hash when no local account has
    this name, so an unknown name costs the same work as a known one: existence cannot be timed.
    """
    user = get_user_by_username(username)
    stored = user.password_hash if user is not None and user.password_hash else None
    matches = check_password_hash(stored or _dummy_hash(), password or "")
    if stored is None or not matches or not user.active:
        return None
    return user


SIGNIN_WINDOW = 15 * 60  # seconds failures are remembered
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_IP = 20


def _attempt_keys(username: str, ip: str | None) -> list[tuple[str, int]]:
    return [(f"signin-fail:user:{username.lower()[:150]}", MAX_FAILURES_PER_ACCOUNT),
            (f"signin-fail:ip:{ip or '?'}", MAX_FAILURES_PER_IP)]


def _count(key: str, delta: int = 1) -> int:
    return cache.cache.count(key, SIGNIN_WINDOW, delta)


def reserve_signin_attempt(username: str, ip: str | None) -> bool:
    """Count a sign-in attempt for this account and address before its password is checked;
    False when either has used up its attempts in the last SIGNIN_WINDOW.

    The count is one atomic increment per key, so parallel guesses are each counted and no more
    than the limit are ever checked. A success gives its attempt back (`signin_succeeded`).
    """
    counts = [(_count(key), limit) for key, limit in _attempt_keys(username, ip)]
    return all(count <= limit for count, limit in counts)


def record_failed_signin(username: str, ip: str | None) -> None:
    log.warning("Failed sign-in for %r from %s", username[:150], ip)


def signin_succeeded(username: str, ip: str | None) -> None:
    """Forget the account's failures; the address gets back the attempt it reserved."""
    (account, _), (address, _) = _attempt_keys(username, ip)
    cache.delete(account)
    _count(address, -1)


def is_safe_next(target: str | None) -> bool:
    """Only a local path may follow a sign-in: one leading slash, no scheme, host or controls."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return False
    return not any(ord(c) < 32 or c == "\\" for c in target)


def check_password_strength(password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise ValidationError(
            "password", f"the password needs at least {MIN_PASSWORD_LENGTH} characters"
        )


def create_admin(username: str, password: str) -> User:
    """Add a local account with the admin global role."""
    if not USERNAME_RE.match(username or ""):
        raise ValidationError(
            "username", "use 1 to 150 letters, digits and the characters . @ + - _"
        )
    if get_user_by_username(username) is not None:
        raise ValidationError("username", f"a user named {username!r} already exists")
    check_password_strength(password)
    user = User(username=username, global_role=GlobalRole.ADMIN, active=True)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    log.info("Created admin account %r", username)
    return user
