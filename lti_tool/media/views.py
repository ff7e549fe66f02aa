"""Pages shown inside the LMS iframe after a launch: a course's media, one's own, one item."""

from flask import Blueprint, abort, render_template, session
from flask_login import current_user, login_required

from ..extensions import db
from ..models import Category, Media
from ..security import allow_framing_by
from ..services import access, platforms

bp = Blueprint("media", __name__, url_prefix="/media")


@bp.before_request
def frame_for_the_lms():
    allow_framing_by(*(session.get("frame_origins") or platforms.frame_origins()))


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
    media = db.get_or_404(Media, id)
    if not access.can_view_media(current_user, media):
        abort(403)
    return render_template("media/detail.html", media=media)


@bp.get("/picker/<launch_id>")
@login_required
def picker(launch_id: str):
    if session.get("launch_id") != launch_id:
        abort(403)
    return render_template("media/picker.html")
