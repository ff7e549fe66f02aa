"""Pages shown inside the LMS iframe after a launch: a course's media, one's own, one item."""

from flask import Blueprint, abort, current_app, render_template, send_file, session
from flask_login import current_user, login_required

from ..extensions import db
from ..models import Category, Media
from ..security import allow_framing_by
from ..services import access, media, platforms

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


@bp.get("/picker/<launch_id>")
@login_required
def picker(launch_id: str):
    if session.get("launch_id") != launch_id:
        abort(403)
    return render_template("media/picker.html")
