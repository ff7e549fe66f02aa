"""Admin dashboard: sign-in and the home page (platforms, mappings and setup come next)."""

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from ..models import GlobalRole
from ..services import dashboard, users
from .forms import LoginForm, LogoutForm

bp = Blueprint("admin", __name__, url_prefix="/admin")

OPEN_ENDPOINTS = {"admin.login"}


@bp.before_request
def require_staff():
    """Admins may change things, managers may read; others get 403, strangers sign in."""
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
    if not current_user.has_global_role(GlobalRole.MANAGER):
        abort(403)
    if request.method == "POST" and request.endpoint != "admin.logout":
        if not current_user.has_global_role(GlobalRole.ADMIN):
            abort(403)
    return None


@bp.get("/")
def index():
    return render_template(
        "admin/index.html",
        figures=dashboard.summary(),
        failures=dashboard.recent_failures(),
        logout_form=LogoutForm(),
    )


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        user = users.authenticate(form.username.data, form.password.data)
        if user is None:
            form.password.errors.append("Wrong username or password.")
        else:
            session.clear()
            login_user(user)
            target = form.next.data
            return redirect(target if users.is_safe_next(target) else url_for(".index"), 303)
    return render_template("admin/login.html", form=form)


@bp.post("/logout")
def logout():
    if LogoutForm().validate_on_submit():
        logout_user()
        session.clear()
        flash("Signed out.")
    return redirect(url_for(".login"), 303)
