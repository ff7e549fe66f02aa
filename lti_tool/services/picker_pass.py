"""The picker pass: the deep-linking picker where the browser keeps none of the tool's cookies.

After a Platform Storage launch (cookies blocked in the LMS frame) the picker is drawn in the
launch's own answer, and nothing the browser sends next carries a session. The picker's forms
then carry a pass instead: signed with the tool's secret key, naming the user (at their session
version: "sign out everywhere" ends it), the deep-linking launch and the launch data's session,
for PASS_SECONDS, with the login's parameters for the link to a window of its own (where
preview and upload work). It is accepted on POSTs to that launch's picker only, for that
request only: it signs nobody in (a pass posted into another browser leaves no session there),
and being unguessable and bound to the form it is the form's CSRF token too. Searching and
paging post the same form: no pass travels in an address, where logs would keep it.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g, request
from itsdangerous import BadData, URLSafeTimedSerializer

from ..models import User
from . import users
from .message_launch import STORAGE_SESSION_ID
from .platform_storage import NEW_WINDOW_PARAMS, new_window_url

FIELD = "picker_pass"
ENDPOINT = "media.picker"
PASS_SECONDS = 2 * 3600  # a teacher choosing media; the launch data lives no longer anyway
_SALT = "lti-tool.picker-pass"


@dataclass(frozen=True)
class PickerPass:
    token: str
    user: User
    launch_id: str
    login_params: dict

    @property
    def new_window(self) -> str | None:
        return new_window_url(self.login_params)


def issue(user: User, launch_id: str, storage_session_id: str,
          login_params: dict | None) -> str:
    kept = {k: v for k, v in (login_params or {}).items() if k in NEW_WINDOW_PARAMS}
    return _serializer().dumps([user.id, user.session_version, launch_id, storage_session_id,
                                kept])


def from_request() -> PickerPass | None:
    """The valid pass of this request (a POST to the picker of the launch it names), else None.

    Also points the launch data's storage at the pass's session, as the launch did.
    """
    if "picker_pass" in g:
        return g.picker_pass
    g.picker_pass = None
    if request.method != "POST" or request.endpoint != ENDPOINT:
        return None
    token = request.form.get(FIELD)
    launch_id = (request.view_args or {}).get("launch_id")
    if not token or not launch_id:
        return None
    try:
        user_id, version, named, storage_id, params = _serializer().loads(
            token, max_age=PASS_SECONDS)
    except (BadData, ValueError, TypeError):
        return None
    user = users.load_user(str(user_id), version) if named == launch_id else None
    if user is None:
        return None
    g.picker_pass = found = PickerPass(token, user, launch_id, dict(params))
    g.setdefault(STORAGE_SESSION_ID, storage_id)
    return found


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=_SALT)
