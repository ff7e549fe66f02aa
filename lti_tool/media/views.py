"""Pages shown inside the LMS iframe after a launch: a course's media, one's own, one item."""

from flask import (
    Blueprint,
    abort,
    current_app,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from flask_login import current_user, login_required

from ..errors import ValidationError
from ..extensions import db
from ..models import Category, Media
from ..security import allow_framing_by
from ..services import access, claims, deep_linking, media, platforms, tool_conf
from ..services.tool_conf import load_launch_data, lti_context
from .forms import SCOPE_LABELS, PickerFilterForm, PickerForm

bp = Blueprint("media", __name__, url_prefix="/media")


@bp.before_request
def frame_for_the_lms():
    # 'self': the player page frames its own PDF.
    allow_framing_by("'self'", *(session.get("frame_origins") or platforms.frame_origins()))


@bp.get("/")
@login_required
def my_media():
    return render_template("media/my_media.html", items=access.own_media(current_user))


@bp.get("/category/<int:id>")
@login_required
def category(id: int):
    category = db.get_or_404(Category, id)
    role = access.category_role(current_user, category)
    if role is None and not access.can_view_category(current_user, category):
        abort(403)
    return render_template(
        "media/category.html", category=category, role=role,
        items=access.category_media(category),
    )


@bp.get("/<int:id>")
@login_required
def media_detail(id: int):
    item = db.get_or_404(Media, id)
    if not access.can_view_media(current_user, item):
        abort(403)
    return render_template("media/detail.html", media=item)


@bp.get("/<int:id>/file")
@login_required
def media_file(id: int):
    """The file itself, with HTTP Range support (video seeking), checked on every request."""
    item = db.get_or_404(Media, id)
    if not access.can_view_media(current_user, item):
        abort(403)
    path = media.file_path(current_app.config["MEDIA_ROOT"], item)
    if not path.is_file():
        abort(404, description="The file of this media item is missing.")
    response = send_file(path, mimetype=item.mime_type, conditional=True, etag=True,
                         download_name=f"media-{item.id}.{path.suffix.lstrip('.')}")
    response.headers["Content-Disposition"] = "inline"
    # Access depends on who asks: browsers may keep it, shared caches may not.
    response.cache_control.private = True
    response.cache_control.public = False
    response.cache_control.max_age = 3600
    return response


@bp.route("/picker/<launch_id>", methods=["GET", "POST"])
@login_required
def picker(launch_id: str):
    """The instructor's media picker for a deep-linking request; POST answers the platform."""
    request_, platform = _pending_request(launch_id)
    category = deep_linking.course_category(request_)
    form = PickerForm()
    error = None
    if form.validate_on_submit():
        try:
            chosen = [] if form.action.data == "cancel" else deep_linking.chosen_media(
                current_user, category, form.media_ids.data or [], request_.accept_multiple
            )
            return_url = deep_linking.check_return_url(request_, platform)
        except ValidationError as e:
            error = e.message
        else:
            launch_url = url_for("launch.launch", _external=True)
            items = [deep_linking.content_item(m, request_, launch_url, None) for m in chosen]
            token = deep_linking.response_jwt(request_, platform, items)
            return render_template("media/deep_link_return.html", action=return_url,
                                   jwt=token, count=len(items))
    filters = PickerFilterForm(request.args)
    items, more = deep_linking.pickable_media(
        current_user, category, filters.clean_scope(), filters.q.data or "",
        filters.page.data or 1,
    )
    return render_template(
        "media/picker.html", form=form, filters=filters, items=items, more=more,
        page=filters.page.data or 1, request_=request_, launch_id=launch_id, error=error,
        category=category, scope_labels=SCOPE_LABELS,
    ), (400 if error else 200)


def _pending_request(launch_id: str):
    """The deep-linking request of one of this user's launches, else a clear refusal."""
    if launch_id not in session.get("launch_ids", []):
        abort(403, description="This media picker belongs to another launch: open it again "
                               "from your course.")
    launch = load_launch_data(lti_context(), launch_id)
    if not launch or launch.get(claims.MESSAGE_TYPE) != claims.DEEP_LINKING_REQUEST:
        abort(410, description="This request to choose media has expired: open it again "
                               "from your course.")
    platform = tool_conf.find_platform(launch["iss"], launch.get("azp") or (
        launch["aud"][0] if isinstance(launch["aud"], list) else launch["aud"]))
    return deep_linking.Request.from_launch(launch, platform), platform
