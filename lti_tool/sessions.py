"""Signed-in sessions that the server can end: each carries its user's session version.

The cookie session is signed but lives in the browser, so a copy taken before "Sign out" would
keep working until it expires. A session therefore records the user's `session_version` when
they sign in (the admin form or an LTI launch: both go through Flask-Login's `login_user`,
whose `user_logged_in` signal writes it), and the user loader accepts it only while it is still
the user's current version. `services.users.end_sessions` raises the version.
"""

from flask import Flask, session
from flask_login import user_logged_in

from .extensions import login_manager
from .models import User
from .services import media_pass, picker_pass, users

SESSION_VERSION_KEY = "_sv"


def load_user(user_id: str) -> User | None:
    """Flask-Login's user loader: the session's user, while active and the session current."""
    return users.load_user(user_id, session.get(SESSION_VERSION_KEY))


def load_user_from_pass(request) -> User | None:
    """Flask-Login's request loader, for requests without a signed-in session, where the
    browser keeps no cookie for the tool: the picker pass of a deep-linking picker
    (services.picker_pass) or the media pass of a player (services.media_pass), for that one
    request."""
    found = picker_pass.from_request()
    return found.user if found else media_pass.from_request()


def _remember_version(sender: Flask, user: User, **extra) -> None:
    session[SESSION_VERSION_KEY] = user.session_version


def init_app(app: Flask) -> None:
    login_manager.user_loader(load_user)
    login_manager.request_loader(load_user_from_pass)
    user_logged_in.connect(_remember_version, app)
