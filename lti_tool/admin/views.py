"""Admin dashboard: sign-in and the home page (platforms, mappings and setup come next)."""

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user
from sqlalchemy.exc import IntegrityError

from .. import staff
from ..errors import ValidationError
from ..extensions import db
from ..models import (
    Category,
    GlobalRole,
    GroupRole,
    Job,
    JobState,
    LTILaunchLog,
    LTIPlatform,
    LTIRoleMapping,
    User,
)
from ..services import (
    dashboard,
    directory,
    inbox,
    jobs,
    jwks,
    platforms,
    registration,
    role_mappings,
    users,
)
from .forms import (
    ActionForm,
    ConfirmDeleteForm,
    LoginForm,
    PlatformForm,
    RoleMappingForm,
    SimulatorForm,
    UserAccessForm,
)

bp = Blueprint("admin", __name__, url_prefix="/admin")
staff.guard(bp)


@bp.get("/")
def index():
    return render_template(
        "admin/index.html", figures=dashboard.summary(), failures=dashboard.recent_failures(),
        queues=jobs.queue_figures(), running=jobs.running_jobs(),
        failed_jobs=jobs.recent_failures(), retry_form=ActionForm(),
        inbox_count=inbox.count_open() + registration.count_pending(),
    )


@bp.post("/jobs/<int:id>/retry")
def job_retry(id: int):
    """Run a failed background job again (a new job with the same work)."""
    job = db.get_or_404(Job, id)
    if not ActionForm().validate_on_submit():
        abort(400, description="The form expired: reload the dashboard and try again.")
    again = jobs.retry(job) if job.state is JobState.FAILED else None
    if again is None:
        flash("Nothing to retry: this job has not failed, or its work is gone.", "error")
    else:
        db.session.commit()
        jobs.dispatch(again)
        flash(f"Queued {again.kind} again (job {again.id}).")
    return redirect(url_for(".index") + "#jobs", 303)


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        username, ip = form.username.data, request.remote_addr
        if not users.reserve_signin_attempt(username, ip):
            form.password.errors.append("Too many failed sign-ins: wait "
                                        f"{users.SIGNIN_WINDOW // 60} minutes, then try again.")
            return render_template("admin/login.html", form=form), 429
        user = users.authenticate(username, form.password.data)
        if user is None:
            users.record_failed_signin(username, ip)
            form.password.errors.append("Wrong username or password.")
        else:
            users.signin_succeeded(username, ip)
            session.clear()
            login_user(user)
            target = form.next.data
            return redirect(target if users.is_safe_next(target) else url_for(".index"), 303)
    return render_template("admin/login.html", form=form)


@bp.post("/logout")
def logout():
    if ActionForm().validate_on_submit():
        if current_user.is_authenticated:
            users.end_sessions(current_user._get_current_object())
            db.session.commit()
        logout_user()
        session.clear()
        flash("Signed out.")
    return redirect(url_for(".login"), 303)


# Setup


def _tool_urls() -> dict[str, str]:
    """The tool's own URLs as an LMS must call them (scheme and host as the browser sees them)."""
    launch = url_for("launch.launch", _external=True)
    return {"launch": launch, "login": url_for("launch.login", _external=True),
            "jwks": url_for("launch.jwks", _external=True),
            "register": url_for("registration.register", _external=True)}


@bp.get("/setup")
def setup():
    return render_template("admin/setup.html", urls=_tool_urls(), platform=None,
                           registration_enabled=current_app.config["REGISTRATION_ENABLED"])


@bp.get("/platforms/<int:id>/setup")
def platform_setup(id: int):
    return render_template("admin/setup.html", urls=_tool_urls(),
                           platform=db.get_or_404(LTIPlatform, id))


# Platforms


@bp.get("/platforms/")
def platform_list():
    q = request.args.get("q", "")
    active = {"yes": True, "no": False}.get(request.args.get("active", ""))
    page = platforms.search_platforms(q, active, request.args.get("page", 1, type=int))
    return render_template("admin/platforms/list.html", page=page, q=q,
                           active=request.args.get("active", ""))


@bp.route("/platforms/new", methods=["GET", "POST"])
def platform_create():
    form = PlatformForm()
    if form.validate_on_submit() and _save_platform(form, None):
        return redirect(url_for(".platform_detail", id=form.platform.id), 303)
    return render_template("admin/platforms/form.html", form=form, platform=None), (
        400 if form.errors else 200)


@bp.route("/platforms/<int:id>/edit", methods=["GET", "POST"])
def platform_edit(id: int):
    platform = db.get_or_404(LTIPlatform, id)
    form = PlatformForm(obj=platform)
    if request.method == "GET":
        form.deployment_ids.data = "\n".join(platform.deployment_ids or [])
    if form.validate_on_submit() and _save_platform(form, platform):
        return redirect(url_for(".platform_detail", id=id), 303)
    return render_template("admin/platforms/form.html", form=form, platform=platform), (
        400 if form.errors else 200)


def _save_platform(form: PlatformForm, platform: LTIPlatform | None) -> bool:
    """Create or update from the form; errors land on the form's fields."""
    data = form.data_for_service()
    allow_http = current_app.config["DEVELOPMENT"]
    try:
        if form.moodle_site.data:
            data = platforms.fill_from_moodle_site(data, form.moodle_site.data, allow_http)
        if platform is None:
            platform = platforms.create_platform(data, allow_http)
        else:
            platforms.update_platform(platform, data, allow_http)
        db.session.commit()
    except ValidationError as e:
        db.session.rollback()
        form[e.field].errors.append(e.message)
        return False
    except IntegrityError:
        db.session.rollback()
        form.name.errors.append("a platform with this name or issuer and client ID exists")
        return False
    form.platform = platform
    flash(f"Saved {platform.name}.")
    return True


@bp.get("/platforms/<int:id>")
def platform_detail(id: int):
    platform = db.get_or_404(LTIPlatform, id)
    return render_template("admin/platforms/detail.html", platform=platform,
                           health=dashboard.platform_health(platform))


@bp.post("/platforms/<int:id>/active")
def platform_toggle(id: int):
    platform = db.get_or_404(LTIPlatform, id)
    if ActionForm().validate_on_submit():
        platforms.set_active(platform, request.form.get("active") == "1")
        db.session.commit()
        flash(f"{platform.name} is {'active' if platform.active else 'switched off'}.")
    return redirect(url_for(".platform_detail", id=id), 303)


@bp.post("/platforms/<int:id>/refresh-keys")
def platform_refresh_keys(id: int):
    platform = db.get_or_404(LTIPlatform, id)
    if ActionForm().validate_on_submit():
        try:
            key_set = jwks.refresh_platform_keys(platform)
        except jwks.JWKSFetchError as e:
            flash(f"Keys not refreshed: {e}", "error")
        else:
            kids = ", ".join(str(k.get("kid")) for k in key_set["keys"])
            flash(f"Fetched {len(key_set['keys'])} key(s): {kids}.")
    return redirect(url_for(".platform_detail", id=id), 303)


@bp.route("/platforms/<int:id>/delete", methods=["GET", "POST"])
def platform_delete(id: int):
    platform = db.get_or_404(LTIPlatform, id)
    form = ConfirmDeleteForm()
    if form.validate_on_submit():
        if form.confirm_name.data != platform.name:
            form.confirm_name.errors.append("type the name exactly as shown")
        else:
            platforms.remove_platform(platform)
            db.session.commit()
            flash(f"Deleted {platform.name}.")
            return redirect(url_for(".platform_list"), 303)
    return render_template("admin/platforms/confirm_delete.html", form=form, platform=platform,
                           dependants=platforms.dependants(platform)), (
        400 if form.errors else 200)


# Role mappings


@bp.get("/platforms/<int:id>/role-mappings/")
def role_mapping_list(id: int):
    platform = db.get_or_404(LTIPlatform, id)
    mappings = role_mappings.mappings_of(platform)
    launches = role_mappings.recent_launch_roles(platform)
    form = SimulatorForm(request.args).offer(launches)
    roles, result = None, None
    if form.launch.data:
        entry = db.session.get(LTILaunchLog, form.launch.data)
        if entry is not None and entry.platform_id == platform.id:
            roles = list((entry.claims or {}).get("https://purl.imsglobal.org/spec/lti/claim/roles")
                         or [])
    elif form.roles.data:
        roles = role_mappings.split_roles(form.roles.data)
    if roles is not None:
        result = role_mappings.simulate(roles, mappings)
    return render_template(
        "admin/role_mappings/list.html", platform=platform, mappings=mappings, form=form,
        roles=roles, result=result, defaults=role_mappings.default_table(),
        launches=launches,
    )


@bp.route("/platforms/<int:id>/role-mappings/new", methods=["GET", "POST"])
def role_mapping_create(id: int):
    return _role_mapping_form(db.get_or_404(LTIPlatform, id), None)


@bp.route("/platforms/<int:id>/role-mappings/<int:mapping_id>/edit", methods=["GET", "POST"])
def role_mapping_edit(id: int, mapping_id: int):
    platform = db.get_or_404(LTIPlatform, id)
    mapping = db.get_or_404(LTIRoleMapping, mapping_id)
    if mapping.platform_id != platform.id:
        abort(404)
    return _role_mapping_form(platform, mapping)


def _role_mapping_form(platform: LTIPlatform, mapping: LTIRoleMapping | None):
    form = RoleMappingForm(obj=mapping)
    if request.method == "GET" and mapping is not None:
        form.global_role.data = mapping.global_role.value if mapping.global_role else ""
        form.group_role.data = mapping.group_role.value if mapping.group_role else ""
    preview = None
    if form.validate_on_submit():
        global_role = GlobalRole(form.global_role.data) if form.global_role.data else None
        group_role = GroupRole(form.group_role.data) if form.group_role.data else None
        if form.action.data == "try":
            edited = LTIRoleMapping(id=mapping.id if mapping else None,
                                    platform_id=platform.id, lti_role=form.lti_role.data,
                                    global_role=global_role, group_role=group_role)
            roles = role_mappings.split_roles(form.simulate_roles.data)
            preview = (roles, role_mappings.simulate(
                roles, role_mappings.mappings_of(platform), edited))
        else:
            try:
                role_mappings.save_mapping(platform, form.lti_role.data, global_role,
                                           group_role, mapping)
                db.session.commit()
            except ValidationError as e:
                db.session.rollback()
                form[e.field].errors.append(e.message)
            else:
                flash(f"Saved the mapping for {form.lti_role.data}.")
                return redirect(url_for(".role_mapping_list", id=platform.id), 303)
    return render_template("admin/role_mappings/form.html", form=form, platform=platform,
                           mapping=mapping, preview=preview), 400 if form.errors else 200


@bp.route("/platforms/<int:id>/role-mappings/<int:mapping_id>/delete", methods=["GET", "POST"])
def role_mapping_delete(id: int, mapping_id: int):
    mapping = db.get_or_404(LTIRoleMapping, mapping_id)
    if mapping.platform_id != id:
        abort(404)
    form = ActionForm()
    if form.validate_on_submit():
        role_mappings.delete_mapping(mapping)
        db.session.commit()
        flash(f"Deleted the mapping for {mapping.lti_role}; its defaults apply again.")
        return redirect(url_for(".role_mapping_list", id=id), 303)
    return render_template("admin/role_mappings/confirm_delete.html", form=form,
                           mapping=mapping)


# Links, people, course spaces


def _list_args() -> tuple[str, int, int | None]:
    return (request.args.get("q", ""), request.args.get("page", 1, type=int),
            request.args.get("platform", type=int))


def _per_platform_list(template: str, search):
    """A list searched by text and filtered by platform: `search(platform_id, q, page)`."""
    q, page, platform_id = _list_args()
    return render_template(template, q=q, platform_id=platform_id,
                           page=search(platform_id, q, page),
                           platforms=platforms.list_platforms())


@bp.get("/links/")
def link_list():
    return _per_platform_list("admin/links.html", directory.resource_links)


@bp.get("/user-mappings/")
def user_mapping_list():
    return _per_platform_list("admin/user_mappings.html", directory.user_mappings)


@bp.get("/users/")
def user_list():
    q, page, _ = _list_args()
    return render_template("admin/users.html", q=q, page=directory.users(q, page),
                           access_form=UserAccessForm.of)


@bp.post("/users/<int:id>")
def user_update(id: int):
    user = db.get_or_404(User, id)
    form = UserAccessForm.of(user)
    if ActionForm().validate_on_submit():
        if not form.validate():
            abort(400, description="Choose one of the global roles.")
        try:
            directory.set_user_access(user, current_user, GlobalRole(form.global_role.data),
                                      form.active.data)
        except ValidationError as e:
            db.session.rollback()
            flash(f"Not changed: {e.message}.", "error")
        else:
            db.session.commit()
            flash(f"{user.username}: {user.global_role}, "
                  f"{'active' if user.active else 'deactivated'}.")
    return redirect(url_for(".user_list", q=request.args.get("q", "")), 303)


@bp.get("/categories/")
def category_list():
    q, page_number, _ = _list_args()
    page = directory.categories(q, page_number)
    return render_template("admin/categories.html", q=q, page=page,
                           members=directory.member_counts([c.id for c in page.items]))


@bp.get("/categories/<int:id>")
def category_detail(id: int):
    category = db.get_or_404(Category, id)
    return render_template("admin/category.html", category=category,
                           groups=directory.category_groups(category))
