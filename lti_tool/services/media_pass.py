"""The media pass: a player that plays where the browser keeps none of the tool's cookies.

After a Platform Storage launch (cookies blocked in the LMS frame) the item's page is drawn in
the launch's own answer, but the browser's requests for the video, its HLS playlists and
segments, poster and captions carry no session. The player's addresses then carry a pass in
their path (`/media/<id>/pass/<token>/file`, `.../hls/master.m3u8`: an HLS player resolves the
segments' relative addresses under it): signed with the tool's secret key, naming the item and
the user at their session version, for PASS_SECONDS. It lets that user's browser fetch that
item's playback files, for those requests only (it signs nobody in), and the usual check of
who may see the item still applies. The access logs hide it (gunicorn.conf.py's AccessLogger,
the nginx site's log format).
"""

from __future__ import annotations

from flask import current_app, g, request
from itsdangerous import BadData, URLSafeTimedSerializer

from ..models import User
from . import users
from .message_launch import STORAGE_SESSION_ID

# The playback endpoints a pass opens: the files of one item, and the player's own requests.
ENDPOINTS = frozenset({"media.media_file", "media.media_hls", "media.media_poster",
                       "media.media_captions", "media.media_player", "media.media_status"})
PASS_SECONDS = 6 * 3600  # a long lecture watched with pauses
_SALT = "lti-tool.media-pass"


def issue(media_id: int, user: User) -> str:
    return _serializer().dumps([media_id, user.id, user.session_version])


def from_request() -> User | None:
    """The user of this request's valid pass (a GET of a playback endpoint of the item the pass
    names), else None. Remembered for the request: the page it draws passes it on."""
    if "media_pass" in g:
        return g.media_pass[1] if g.media_pass else None
    g.media_pass = None
    args = request.view_args or {}
    if request.method not in ("GET", "HEAD") or request.endpoint not in ENDPOINTS \
            or not args.get("token"):
        return None
    try:
        media_id, user_id, version = _serializer().loads(args["token"], max_age=PASS_SECONDS)
    except (BadData, ValueError, TypeError):
        return None
    if media_id != args.get("id"):
        return None
    user = users.load_user(str(user_id), version)
    if user is not None:
        g.media_pass = (args["token"], user)
    return user


def for_page(media_id: int, user: User) -> str | None:
    """The pass the player's addresses carry on this page: this request's own, or a new one
    where the page is a Platform Storage launch's answer. None where the session works."""
    if g.get("media_pass"):
        return g.media_pass[0]
    if g.get(STORAGE_SESSION_ID) and user.is_authenticated:
        return issue(media_id, user)
    return None


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=_SALT)
