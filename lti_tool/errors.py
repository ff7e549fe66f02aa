"""Domain exceptions and the HTML error pages."""

import logging

import jwt
from flask import Flask, current_app, g, make_response, render_template, request, session, url_for
from flask.globals import request_ctx
from flask_login import current_user
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import (
    HTTPException,
    InternalServerError,
    RequestEntityTooLarge,
    ServiceUnavailable,
)

from .extensions import db

log = logging.getLogger(__name__)


class ValidationError(Exception):
    """Input a service refuses; `field` names the form field or CLI option at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class LaunchError(Exception):
    """An LTI login or launch that cannot go on.

    `category` is one of the launch doctor's categories (services/doctor.py); `details` feed its
    fix text. What the launch had learned when it failed (the platform, the unverified claims,
    the message type) is attached on the way out, for the failed-launch log entry; the login's
    parameters too when they are known, for the error page's "Try again".
    """

    def __init__(self, category: str, message: str, **details):
        super().__init__(message)
        self.category = category
        self.message = message
        self.details = details
        self.platform = None
        self.claims: dict | None = None
        self.deep_linking = False
        self.login_params: dict[str, str] | None = None


class KeyUnavailableError(RuntimeError):
    """The tool's private key cannot be used (for example SECRET_KEY changed since it was made)."""


def human_size(n: int) -> str:
    """A byte count for people: 512 KB, 2 MB, 1.5 GB."""
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(RequestEntityTooLarge, _too_large)
    app.register_error_handler(RedisConnectionError, _cache_unavailable)
    app.register_error_handler(RedisTimeoutError, _cache_unavailable)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


# Plain words for the errors people meet: a title and what to do. A view's own description
# (abort(403, description=...)) says more than the general text and replaces it.
PAGES = {
    400: ("Something in this request was not right",
          "Go back and try again. If it keeps happening, tell your administrator."),
    401: ("Please sign in again", "Please open the media tool again from your course."),
    403: ("You cannot open this page",
          "You do not have access to this page. Ask your teacher or administrator if you think "
          "you should."),
    404: ("This page does not exist",
          "The page may have been deleted, or the link is not complete."),
    405: ("This cannot be done here", "Go back and use the page's own buttons."),
    409: ("This was changed at the same time elsewhere", "Reload the page and try again."),
    410: ("This is no longer available", "It has been deleted."),
    413: ("The file is too large", "The file is larger than the tool accepts. Nothing was saved."),
    415: ("This kind of file is not accepted", "Choose a video, audio, image or PDF file."),
    429: ("Too many requests at once", "Wait a moment, then try again."),
    500: ("Something went wrong",
          "The media tool hit a problem. Try again; if it keeps happening, tell your "
          "administrator."),
    502: ("The media tool is not available right now", "Try again in a minute."),
    503: ("The media tool is temporarily unavailable", "Try again in a minute."),
}
RETRY_AFTER = 60  # seconds: "Try again in a minute"
IN_LMS_BLUEPRINTS = frozenset({"media", "launch", "home"})
STAFF_BLUEPRINTS = frozenset({"admin", "audit"})


def _http_error(error: HTTPException):
    # A refused Host header leaves no URL adapter: that page links nothing, so it still renders.
    page = None
    if request_ctx.url_adapter:
        try:
            page = render_template("errors/error.html", **_page(error))
        except Exception:  # a broken session or database on the way: the plain page still shows
            log.exception("The error page failed; showing the plain one")
    if page is None:
        page = render_template("errors/plain.html", error=error)
    response = make_response(page, error.code)
    # Keep the headers the error carries: Allow on 405, Content-Range on 416, …
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _page(error: HTTPException) -> dict:
    """The error page's words and layout: the frame layout (with the way back to the course's
    media) inside the LMS, the staff layout on staff pages, the plain full layout elsewhere."""
    title, text = PAGES.get(error.code or 500, (None, None))
    if title is None:
        title = error.name[:1] + error.name[1:].lower()
    if error.description != type(error).description or text is None:
        text = error.description
    in_lms = _in_lms()
    back_url = None
    if in_lms:
        from .security import allow_framing_by

        if "frame_ancestors" not in g and session.get("frame_origins"):
            allow_framing_by("'self'", *session["frame_origins"])
        if isinstance(course_id := session.get("course_id"), int):
            back_url = url_for("media.category", id=course_id)
    if in_lms:
        layout = "_frame.html"
    elif request.blueprint in STAFF_BLUEPRINTS and _is_staff():
        layout = "admin/_layout.html"
    else:
        layout = "base.html"
    return {"error": error, "title": title, "text": text, "layout": layout,
            "back_url": back_url}


def _in_lms() -> bool:
    """The page is shown inside the LMS's iframe (a page of the LMS's blueprints, or any page
    but the staff ones for a user who came from a launch)."""
    if request.blueprint in IN_LMS_BLUEPRINTS:
        return True
    if request.blueprint in STAFF_BLUEPRINTS or request.path.startswith(("/admin", "/audit")):
        return False
    return bool(session.get("frame_origins"))


def _is_staff() -> bool:
    from .models import GlobalRole

    try:
        return current_user.is_authenticated and current_user.has_global_role(GlobalRole.MANAGER)
    except Exception:  # a broken database on the way to a 500 page
        return False


def _too_large(error: RequestEntityTooLarge):
    limit = human_size(current_app.config["MAX_UPLOAD_BYTES"])
    error.description = f"The file is larger than the limit of {limit}. Nothing was saved."
    return _http_error(error)


def _unexpected_error(error: Exception):
    log.exception("Unhandled error")
    return _http_error(InternalServerError())


def _cache_unavailable(error: Exception):
    """The shared cache (Redis) did not answer: 503, "temporarily unavailable", nothing written.

    A login or a launch also gets its page framed by its platform, no session, and (where the
    platform is known) a failed-launch log entry. Nothing is remembered: the next request asks
    Redis again, so launches resume as soon as it is back.
    """
    from .security import allow_framing_by
    from .services import claims, launches, platforms

    db.session.rollback()  # nothing half-written
    log.warning("The shared cache (Redis) did not answer %s %s: %s: %s", request.method,
                request.path, type(error).__name__, " ".join(str(error).split())[:200])
    if request.blueprint == "launch":
        session.clear()
        token_claims = _unverified_claims()
        platform = _launch_platform(token_claims)
        allow_framing_by(*platforms.frame_origins(platform))
        if platform is not None and request.endpoint in ("launch.login", "launch.launch"):
            failure = LaunchError("tool_unavailable", "The shared cache (Redis) did not answer: "
                                  f"{type(error).__name__}.", detail=f"{type(error).__name__}.")
            failure.platform = platform
            failure.claims = token_claims
            message_type = failure.claims.get(claims.MESSAGE_TYPE)
            failure.deep_linking = message_type == claims.DEEP_LINKING_REQUEST
            launches.log_failure(failure, request.remote_addr)
    return _http_error(ServiceUnavailable(retry_after=RETRY_AFTER))


def _launch_platform(claims: dict):
    """The platform a login (its iss and client_id) or a launch (its unverified id_token's
    `claims`) names, if registered: only to frame the error page and file the failure under it."""
    from .services.claims import client_id
    from .services.tool_conf import find_platform

    issuer = claims.get("iss") or request.values.get("iss")
    client = client_id(claims) if claims else request.values.get("client_id")
    if not isinstance(issuer, str) or not isinstance(client, str | None):
        return None
    try:
        return find_platform(issuer, client)
    except Exception:  # unknown, inactive, or the lookup failing too: framed as refusals are
        db.session.rollback()
        return None


def _unverified_claims() -> dict:
    token = request.form.get("id_token") or ""
    try:
        claims = jwt.decode(token, options={"verify_signature": False}) if token else {}
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}
