"""`/`: inside the LMS it goes to the user's place; outside, what the tool is and where admins
sign in."""

from flask import Blueprint, redirect, render_template, session, url_for
from flask_login import current_user

from .models import GlobalRole
from .security import allow_framing_by
from .services import platforms

bp = Blueprint("home", __name__)


@bp.get("/")
def index():
    # Framed by the launch's platform (or any registered one): never "refused to connect".
    allow_framing_by(*(session.get("frame_origins") or platforms.frame_origins()))
    if current_user.is_authenticated and session.get("frame_origins"):
        course = session.get("course_id")
        return redirect(url_for("media.category", id=course) if course else
                        url_for("media.my_media"), 303)
    return render_template("home.html", staff_role=GlobalRole.MANAGER)
