"""Pages shown inside the LMS iframe after a launch: a course's media, one's own, one item."""

import hashlib
import logging
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required

from ..errors import KeyUnavailableError, LaunchError, ValidationError
from ..extensions import csrf, db
from ..launch.views import doctor_page
from ..models import Category, Media, MediaStatus, Visibility
from ..security import allow_form_posts_to, allow_framing_by
from ..services import (
    access,
    deep_linking,
    jobs,
    media,
    media_pass,
    picker_pass,
    platform_storage,
    platforms,
    processing,
    users,
)
from ..services.message_launch import STORAGE_SESSION_ID
from .forms import (
    SCOPE_LABELS,
    DeleteForm,
    EditForm,
    PickerFilterForm,
    PickerForm,
    UploadForm,
)
from .library_forms import LibraryFilterForm

bp = Blueprint("media", __name__, url_prefix="/media")
log = logging.getLogger(__name__)

POLL_SECONDS = 4  # how often a page showing an item being processed asks for its status


@bp.before_request
def frame_for_the_lms():
    # 'self': the player page frames its own PDF.
    allow_framing_by("'self'", *(session.get("frame_origins") or platforms.frame_origins()))


@bp.get("/")
@login_required
def my_media():
    filters = LibraryFilterForm(request.args)
    items, next_after = access.own_media(current_user, filters.clean_after(),
                                         q=filters.clean_q(), sort=filters.clean_sort())
    return render_template("media/my_media.html", items=items, next_after=next_after,
                           filters=filters,
                           can_upload=bool(access.upload_categories(current_user)))


@bp.get("/category/<int:id>")
@login_required
def category(id: int):
    category, role = access.category_with_role(current_user, id)
    if category is None:
        abort(404)
    if role is None and not access.can_view_category(current_user, category):
        abort(403)
    filters = LibraryFilterForm(request.args)
    items, next_after = access.category_media(category, filters.clean_after(),
                                              q=filters.clean_q(), sort=filters.clean_sort())
    return render_template(
        "media/category.html", category=category, role=role, items=items,
        next_after=next_after, filters=filters,
        can_upload=access.can_upload_to(current_user, category, role),
        manages_course=access.manages_category(current_user, category, role),
    )


@bp.route("/upload", methods=["GET", "POST"])
@login_required
def upload():
    """Add a media item to a course the user teaches (or anywhere, for editors)."""
    categories = access.upload_categories(current_user)
    if not categories:
        abort(403, description="Media can be added by a course's teachers: open the tool from "
                               "a course where you teach.")
    form = UploadForm()
    form.set_categories(categories)
    if request.method == "GET":
        form.category.data = request.args.get("category", type=int)
    target = request.args.get("next")
    if form.validate_on_submit():
        root = current_app.config["MEDIA_ROOT"]
        try:
            item = media.add_media(
                form.file.data.stream, root=root,
                max_bytes=current_app.config["MAX_UPLOAD_BYTES"], title=form.title.data,
                original_filename=form.file.data.filename or "",
                description=form.description.data or "", owner=current_user,
                category=next(c for c in categories if c.id == form.category.data),
                visibility=Visibility(form.visibility.data),
            )
        except ValidationError as e:
            form[e.field].errors.append(e.message)
        else:
            job = processing.queue_processing(item)
            media.commit_or_discard(root, item)
            jobs.dispatch(job)
            flash(f"Added “{item.title}”.")
            return redirect(next_after_upload(target, item.id) or
                            url_for(".media_detail", id=item.id), 303)
    return render_template(
        "media/upload.html", form=form, from_picker=is_picker_url(target),
        back_url=upload_back_url(target, form.category.data, categories),
    ), 400 if form.errors else 200


def is_picker_url(target: str | None) -> bool:
    return users.is_safe_next(target) and urlsplit(target).path.startswith("/media/picker/")


def next_after_upload(target: str | None, media_id: int) -> str | None:
    """Where an upload goes on to: the page it came from if that is safe, and back in the
    picker the new item comes chosen (`selected`). None: the new item's own page."""
    if not users.is_safe_next(target):
        return None
    if not is_picker_url(target):
        return target
    parts = urlsplit(target)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("selected", "after")]
    return urlunsplit(parts._replace(query=urlencode([*query, ("selected", media_id)])))


def upload_back_url(target: str | None, category_id, categories: list[Category]) -> str:
    """Cancel: where the teacher came from (the picker), else the chosen course, else my media."""
    if users.is_safe_next(target):
        return target
    if any(c.id == category_id for c in categories):
        return url_for(".category", id=category_id)
    return url_for(".my_media")


@bp.route("/<int:id>/edit", methods=["GET", "POST"])
@login_required
def media_edit(id: int):
    item = manageable_media(id)
    categories = access.upload_categories(current_user)
    if item.category and item.category not in categories:
        categories.append(item.category)
    form = EditForm(obj=item, category=item.category_id, visibility=item.visibility.value)
    form.set_categories(categories)
    if form.validate_on_submit():
        try:
            media.update_media(
                item, title=form.title.data, description=form.description.data or "",
                category=db.session.get(Category, form.category.data),
                visibility=Visibility(form.visibility.data))
            if form.captions.data:
                media.set_captions(item, form.captions.data.stream,
                                   current_app.config["MEDIA_ROOT"])
        except ValidationError as e:
            db.session.rollback()
            form[e.field].errors.append(e.message)
        else:
            db.session.commit()
            flash(f"Saved “{item.title}”.")
            return redirect(url_for(".media_detail", id=item.id), 303)
    return render_template("media/edit.html", form=form, media=item), (
        400 if form.errors else 200)


@bp.route("/<int:id>/delete", methods=["GET", "POST"])
@login_required
def media_delete(id: int):
    item = manageable_media(id)
    form = DeleteForm()
    if form.validate_on_submit():
        back = url_for(".category", id=item.category_id) if item.category_id else url_for(
            ".my_media")
        files = media.delete_media(item)
        db.session.commit()
        for relative in files:
            media.discard_file(current_app.config["MEDIA_ROOT"], relative)
        flash(f"Deleted “{item.title}”. Links to it in courses now open the course's media.")
        return redirect(back, 303)
    return render_template("media/confirm_delete.html", form=form, media=item,
                           links=media.links_to(item))


def viewable_media(id: int) -> Media:
    """The item, if the signed-in user may see it: else 404, 401 or 403."""
    item = db.get_or_404(Media, id)
    if not current_user.is_authenticated:
        abort(401, description="Please open the media tool again from your course.")
    if not access.can_view_media(current_user, item):
        abort(403, description="This media item is not shared with you. Ask its owner or "
                               "your teacher.")
    return item


def manageable_media(id: int) -> Media:
    """The item, if the signed-in user may edit and delete it: else 404 or 403."""
    item = db.get_or_404(Media, id)
    if not access.can_manage_media(current_user, item):
        abort(403, description="Only the owner, the course's managers and editors may change "
                               "this media item.")
    return item


@bp.get("/<int:id>")
@login_required
def media_detail(id: int):
    item = viewable_media(id)
    return render_template("media/detail.html", **player_context(item),
                           course=access.course_of(current_user, item))


def player_context(item: Media) -> dict:
    # In the file's URL: a browser never plays a reprocessed item from its cached old file.
    version = item.renditions_path and hashlib.sha256(item.renditions_path.encode()).hexdigest()
    return {"media": item, "can_manage": access.can_manage_media(current_user, item),
            "report": status_report(item), "poll_seconds": POLL_SECONDS,
            "version": version[:12] if version else None,
            # Where the browser keeps no cookie for the tool, its addresses carry a pass.
            "token": media_pass.for_page(item.id, current_user)}


def status_report(item: Media) -> dict:
    """`processing.progress_report` and the sentence people read, shared by page and poll."""
    report = processing.progress_report(item)
    report["notice"] = status_notice(report)
    return report


def status_notice(report: dict) -> str:
    """"Processing: 45%, ready in about 3 minutes", "Waiting to be processed", ..."""
    status = MediaStatus(report["status"])
    if status is MediaStatus.QUEUED:
        return "Waiting to be processed"
    if status is MediaStatus.PROCESSING:
        minutes = report.get("eta_minutes")
        if minutes is None:
            return f"Processing: {report['progress']}%"
        when = "a minute" if minutes <= 1 else f"{minutes} minutes"
        return f"Processing: {report['progress']}%, ready in about {when}"
    if status is MediaStatus.FAILED:
        return f"Processing failed: {report.get('reason') or 'the file could not be converted'}"
    return "Ready"



@bp.route("/picker/<launch_id>", methods=["GET", "POST"])
@csrf.exempt  # checked here: the session's CSRF token, or the picker pass in its place
@login_required
def picker(launch_id: str):
    """The instructor's media picker for a deep-linking request; POST answers the platform.

    Without cookies (after a Platform Storage launch) the picker's forms carry a picker pass
    (services.picker_pass), and its search and pages are POSTs of the same form.
    """
    passed = g.get("picker_pass")  # found by the request loader: no session here
    if passed is None and request.method == "POST":
        csrf.protect()
    request_, platform = _pending_request(launch_id, passed)
    category = deep_linking.course_category(request_)
    form = PickerForm(meta={"csrf": False}) if passed else PickerForm()
    error = None
    multiple = request_.accept_multiple
    answering = passed is None or form.action.data in ("add", "cancel")
    if answering and form.validate_on_submit():
        try:
            answer = deep_linking.answer(
                current_user, category, request_, platform,
                deep_linking.chosen_ids(form.media_ids.data, form.kept_ids.data, multiple),
                cancel=form.action.data == "cancel",
                launch_url=url_for("launch.launch", _external=True),
                preview_url=lambda m: _signed_thumbnail(m, external=True))
        except ValidationError as e:
            error = e.message
        except KeyUnavailableError as e:
            return _key_unavailable(e, platform)
        else:
            allow_form_posts_to(answer.return_url)
            return render_template("media/deep_link_return.html", action=answer.return_url,
                                   jwt=answer.jwt, count=answer.count)
    browsing = passed is not None and request.method == "POST"
    filters = PickerFilterForm(request.form if browsing else request.args)
    # Back from an upload: the new item comes first, already chosen.
    fresh = deep_linking.usable_media(current_user, category, filters.selected.data)
    items, next_after = deep_linking.pickable_media(
        current_user, category, filters.clean_scope(), filters.q.data or "", filters.after.data
    )
    if fresh is not None and filters.after.data is None:
        items = [fresh, *(i for i in items if i.id != fresh.id)]
    if request.method == "POST":
        kept = form.kept_ids.data + (filters.keep.data if browsing else [])
        chosen = deep_linking.chosen_ids(form.media_ids.data, kept, multiple)
    else:
        chosen = deep_linking.chosen_ids([fresh.id] if fresh is not None else [],
                                         filters.keep.data, multiple)
    on_page = {item.id for item in items}
    pass_token, new_window = _picker_pass(passed, launch_id)
    return render_template(
        "media/picker.html", form=form, filters=filters, items=items, next_after=next_after,
        request_=request_, launch_id=launch_id, error=error, chosen=set(chosen), fresh=fresh,
        kept=[i for i in chosen if i not in on_page],
        category=category, scope_labels=SCOPE_LABELS, picker_pass=pass_token,
        new_window=new_window,
        thumbnails={m.id: _signed_thumbnail(m) for m in items} if pass_token else None,
        can_upload=category is not None and access.can_upload_to(current_user, category),
    ), (400 if error else 200)


def _pending_request(launch_id: str, passed: picker_pass.PickerPass | None = None):
    """The deep-linking request of one of this user's launches, else a clear refusal."""
    if passed is None and launch_id not in session.get("launch_ids", []):
        abort(403, description="This media picker belongs to another launch: open it again "
                               "from your course.")
    found = deep_linking.pending_request(launch_id)
    if found is None:
        abort(410, description="This request to choose media has expired: open it again "
                               "from your course.")
    return found


def _picker_pass(passed: picker_pass.PickerPass | None, launch_id: str):
    """The pass the picker's forms carry where the browser keeps no cookies, and the address of
    a window of its own: this request's, or a new one in a Platform Storage launch's answer.
    (None, None) where the session works."""
    if passed is not None:
        return passed.token, passed.new_window
    storage_session = g.get(STORAGE_SESSION_ID)
    if not storage_session:
        return None, None
    params = g.get("storage_login_params")
    token = picker_pass.issue(current_user, launch_id, storage_session, params)
    return token, platform_storage.new_window_url(params)


def _signed_thumbnail(item: Media, external: bool = False) -> str:
    """The item's thumbnail at an address that needs no session: the LMS shows it with the
    links it gets, and a picker without cookies with its cards."""
    token = media.preview_token(item, current_app.config["SECRET_KEY"])
    return url_for(".media_thumbnail", id=item.id, token=token, _external=external)


def _key_unavailable(error: KeyUnavailableError, platform):
    """The launch doctor's page for a tool key that cannot sign, logged for the admins."""
    log.error("Deep-linking answer not signed: %s", error)
    failure = LaunchError("tool_key_unavailable", str(error), detail=str(error))
    failure.platform, failure.deep_linking = platform, True
    return doctor_page(failure, teacher=True, return_url=None)
