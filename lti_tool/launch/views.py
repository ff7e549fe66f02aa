"""LTI endpoints: OIDC login, the launch (redirect URI of every message type), the tool's JWKS."""

import io

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    jsonify,
    render_template,
    request,
    session,
    url_for,
)
from flask.ctx import RequestContext
from flask_login import login_user

from ..errors import LaunchError
from ..extensions import cache, db
from ..models import LTIPlatform
from ..security import allow_framing_by
from ..services import access, doctor, inbox, keys, launches, oidc, platform_storage, platforms
from ..services.claims import LAUNCH_PRESENTATION
from ..services.provisioning import UNKNOWN, launch_roles
from ..services.tool_conf import lti_context

bp = Blueprint("launch", __name__, url_prefix="/lti")

PENDING_PICKERS = 10  # deep-linking launches of one user whose pickers stay open at once
LOGIN_PARAMS = ("iss", "login_hint", "target_link_uri", "lti_message_hint", "client_id",
                "lti_deployment_id", platform_storage.TARGET_PARAM)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Third-party-initiated login: check cookies, then send the browser to the platform."""
    values = request.values
    try:
        response, platform = oidc.start_login(
            lti_context(),
            {name: values.get(name) for name in LOGIN_PARAMS},
            url_for(".launch", _external=True),
        )
    except LaunchError as error:
        return _refuse(error, step="login")
    allow_framing_by(*platforms.frame_origins(platform))
    return response


@bp.post("/launch")
def launch():
    """Validate the id_token, provision, sign the user in afresh and show their page."""
    if (page := _storage_read_back()) is not None:
        return page
    storage_login = _storage_login_record()  # read before the launch consumes it
    try:
        result = launches.run_launch(lti_context(), request.remote_addr)
    except LaunchError as error:
        return _refuse(error)
    db.session.commit()
    user_id = str(result.provisioned.user.id)
    earlier = session.get("launch_ids", []) if session.get("_user_id") == user_id else []
    session.clear()
    login_user(result.provisioned.user)
    # Pending deep-linking requests of this user in other LMS tabs stay usable.
    if result.deep_linking:
        earlier = [*earlier[-(PENDING_PICKERS - 1):], result.launch_id]
    session["launch_ids"] = earlier
    session["frame_origins"] = platforms.frame_origins(result.platform)
    if result.provisioned.category:  # where `/` and "Back to the course's media" lead
        session["course_id"] = result.provisioned.category.id
        if result.provisioned.course_role is not UNKNOWN:
            access.known_category_role(result.provisioned.user, result.provisioned.category,
                                       result.provisioned.course_role)
    allow_framing_by(*session["frame_origins"])
    if storage_login is not None:
        return _storage_landing(_destination(result), storage_login, result.deep_linking)
    return _page_in_place(_destination(result))


def _storage_read_back():
    """A Platform Storage launch without the state cookie: the page reading the state back from
    the LMS's frame, which then posts the launch again with its proof. None otherwise."""
    state = request.form.get("state") or ""
    has_cookie = bool(state) and lti_context().cookies.get_cookie(state) == state
    if has_cookie or not state or request.form.get(platform_storage.PROOF_PARAM):
        return None  # the usual launch: no need to read its login here (the launch does)
    login = cache.get(oidc.LOGIN_KEY + state)
    if not platform_storage.wants_read_back(request.form, login, has_cookie):
        return None
    platform = db.session.get(LTIPlatform, login["platform_id"])
    if platform is None:
        return None
    allow_framing_by(*platforms.frame_origins(platform))
    return platform_storage.read_back_page(form=request.form, login=login,
                                           auth_url=platform.auth_login_url)


def _storage_login_record() -> dict | None:
    """The login record of a Platform Storage continuation (it carries the proof)."""
    if not request.form.get(platform_storage.PROOF_PARAM):
        return None
    return cache.get(oidc.LOGIN_KEY + (request.form.get("state") or "")) or None


def _page_in_place(url: str, remember: bool = True):
    """The page at `url` (a GET of this tool) as the launch's own response.

    A 303 to it would cost the browser, the proxy and a worker a whole request more. The page is
    rendered in a request context of its own (its path, arguments, endpoint), sharing the
    launch's session and signed-in user, and says where it lives: `Content-Location`, and with
    `remember` a `history.replaceState` in the page, so that reloading the frame asks for the
    page and not for the used launch again.
    """
    path, _, query = url.partition("?")
    root = request.script_root
    environ = {**request.environ, "REQUEST_METHOD": "GET", "QUERY_STRING": query,
               "PATH_INFO": path[len(root):] if root and path.startswith(root) else path,
               "CONTENT_LENGTH": "0", "wsgi.input": io.BytesIO()}
    environ.pop("CONTENT_TYPE", None)
    # The launch's session, with the new sign-in in it.
    page = RequestContext(current_app._get_current_object(), environ,
                          session=session._get_current_object())
    if remember:
        g.page_address = url
    outside = _read_without_transaction()
    with page:
        try:
            answer = current_app.preprocess_request() or current_app.dispatch_request()
        except Exception as error:  # the page's own error page (403, 404, ...), at its address
            answer = current_app.handle_user_exception(error)
        response = current_app.make_response(answer)
    if outside:  # the connection goes back to the pool, where it leaves autocommit
        db.session.commit()
    response.headers["Content-Location"] = url
    return response


def _read_without_transaction() -> bool:
    """On PostgreSQL the page after a committed launch reads outside a transaction: its SELECTs
    need none, and a BEGIN and a ROLLBACK would be two more round trips to the database."""
    if db.engine.dialect.name != "postgresql" or db.session().in_transaction():
        return False
    db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return True


def _storage_landing(url: str, login: dict, picker: bool = False):
    """The landing page after a Platform Storage launch: the browser may keep none of the
    tool's cookies, so a redirect would find no session; in the launch's own response.

    The picker says itself what works there without cookies (services.picker_pass).
    """
    if picker:
        g.storage_login_params = login.get("params")
    elif notice := platform_storage.landing_notice(login):
        flash(notice, "storage")
    response = _page_in_place(url, remember=False)
    # No session kept: the browser blocks the tool's cookies here anyway, and a continuation
    # posted into another browser (login CSRF) must not leave it signed in for later.
    session.clear()
    return response


def _destination(result: launches.LaunchResult) -> str:
    provisioned = result.provisioned
    if result.deep_linking:
        return url_for("media.picker", launch_id=result.launch_id)
    if provisioned.media_id:
        return url_for("media.media_detail", id=provisioned.media_id)
    if provisioned.media_missing:
        flash("The media this link opened has been deleted. Here is the course's media; "
              "your teacher can link another item.")
    if provisioned.category:
        return url_for("media.category", id=provisioned.category.id)
    return url_for("media.my_media")


def _refuse(error: LaunchError, step: str = "launch"):
    """The in-iframe error page, a failed-launch log entry, and no session left behind.

    A refused login does not know the user's role: its page offers the fix to whoever reads
    it (teachers and LMS administrators). A refused launch shows it to teachers only.
    """
    session.clear()
    claims = error.claims or {}
    presentation = claims.get(LAUNCH_PRESENTATION)
    return_url = presentation.get("return_url") if isinstance(presentation, dict) else None
    allow_framing_by(*platforms.frame_origins(error.platform))
    return doctor_page(
        error,
        teacher=launch_roles(claims, error.platform).is_teacher,
        return_url=return_url if platforms.is_safe_return_url(return_url, error.platform) else None,
        step=step,
        capture=inbox.capturable(error) is not None,
    )


def doctor_page(error: LaunchError, *, teacher: bool, return_url: str | None,
                step: str = "launch", capture: bool = False):
    """Log the failure and render the launch doctor's in-iframe page with its reference number
    (the fix is shown to teachers and admins only), its way back and its "Try again".

    With `capture`, the refusal also goes into the admin's platform inbox, in the log entry's
    transaction, and the page says the administrator has been told.
    """
    reference = launches.log_failure(error, request.remote_addr, also=(
        lambda: inbox.capture(error, current_app.config["INBOX_MAX_ROWS"])) if capture else None)
    diagnosis = doctor.diagnose(error.category)
    return render_template(
        "launch/error.html",
        diagnosis=diagnosis,
        category=error.category,
        reference=reference,
        teacher=teacher,
        step=step,
        fix=doctor.fix_for(
            error.category, error.details, error.platform,
            url_for("launch.launch", _external=True),
        ),
        login=error.login_params or {},
        platform=error.platform,
        retry=doctor.retry_for(
            error.category, step, error.login_params, error.platform, error.claims
        ),
        return_url=return_url,
        told=doctor.TOLD if capture else None,
    ), diagnosis.status


@bp.get("/jwks")
def jwks():
    """The tool's public keys: platforms check our deep-linking and token JWTs with them."""
    keys.ensure_current_key()
    response = jsonify(keys.public_jwks())
    response.cache_control.public = True
    response.cache_control.max_age = 300
    return response
