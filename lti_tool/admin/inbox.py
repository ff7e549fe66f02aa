"""Admin: the platform inbox (refused unknown platforms and deployments, waiting registrations)."""

from flask import current_app, flash, redirect, render_template, request, url_for
from sqlalchemy.exc import IntegrityError

from ..errors import ValidationError
from ..extensions import db
from ..models import LTIPlatform, PlatformInboxEntry
from ..services import inbox, registration
from .forms import ActionForm, PlatformForm
from .views import bp


@bp.get("/inbox/")
def inbox_list():
    after = request.args.get("after", type=int)
    entries, next_after = inbox.open_entries(after)
    closed_after = request.args.get("closed_after", type=int)
    closed, next_closed = (inbox.closed_entries(closed_after) if request.args.get("closed")
                           else (None, None))
    return render_template(
        "admin/inbox/list.html", entries=entries, after=after, next_after=next_after,
        known={e.id: inbox.known_platform(e) for e in entries},
        pending=registration.pending_registrations(),
        closed=closed, closed_after=closed_after, next_closed=next_closed,
    )


@bp.get("/inbox/<int:id>")
def inbox_detail(id: int):
    entry = db.get_or_404(PlatformInboxEntry, id)
    return render_template("admin/inbox/detail.html", entry=entry,
                           platform=inbox.known_platform(entry),
                           family=inbox.product_family(entry))


@bp.route("/inbox/<int:id>/platform", methods=["GET", "POST"])
def inbox_create_platform(id: int):
    """A new platform from an entry: the form pre-filled (URLs guessed), saved when confirmed."""
    entry = db.get_or_404(PlatformInboxEntry, id)
    form = PlatformForm()
    if request.method == "GET":
        suggested = inbox.suggested_platform(entry)
        form.process(data=suggested | {
            "deployment_ids": "\n".join(suggested["deployment_ids"])})
    if form.validate_on_submit():
        try:
            platform = inbox.create_platform(entry, form.data_for_service(),
                                             current_app.config["DEVELOPMENT"])
            db.session.commit()
        except ValidationError as e:
            db.session.rollback()
            form[e.field].errors.append(e.message)
        except IntegrityError:
            db.session.rollback()
            form.name.errors.append("a platform with this name or issuer and client ID exists")
        else:
            flash(f"Saved {platform.name}. Launches from it are accepted now.")
            return redirect(url_for(".platform_detail", id=platform.id), 303)
    return render_template("admin/inbox/create_platform.html", form=form, entry=entry,
                           family=inbox.product_family(entry)), 400 if form.errors else 200


@bp.route("/inbox/<int:id>/deployment", methods=["GET", "POST"])
def inbox_add_deployment(id: int):
    entry = db.get_or_404(PlatformInboxEntry, id)
    platform = inbox.known_platform(entry)
    form = ActionForm()
    if form.validate_on_submit():
        try:
            platform = inbox.add_deployment(entry)
        except ValidationError as e:
            db.session.rollback()
            flash(f"Not changed: {e.message}.", "error")
        else:
            db.session.commit()
            flash(f"Deployment {entry.deployment_id} is allowed for {platform.name} now.")
        return redirect(url_for(".inbox_list"), 303)
    return render_template("admin/inbox/confirm.html", form=form, entry=entry, action="deployment",
                           platform=platform)


@bp.route("/inbox/<int:id>/dismiss", methods=["GET", "POST"])
def inbox_dismiss(id: int):
    entry = db.get_or_404(PlatformInboxEntry, id)
    form = ActionForm()
    if form.validate_on_submit():
        inbox.dismiss(entry)
        db.session.commit()
        flash(f"Dismissed the entry for {entry.issuer}.")
        return redirect(url_for(".inbox_list"), 303)
    return render_template("admin/inbox/confirm.html", form=form, entry=entry, action="dismiss",
                           platform=inbox.known_platform(entry))


@bp.route("/inbox/registrations/<int:id>/approve", methods=["GET", "POST"])
def inbox_approve(id: int):
    """Approve a dynamic registration waiting in the inbox: the platform becomes active."""
    platform = db.get_or_404(LTIPlatform, id)
    form = ActionForm()
    if not platform.registration_pending or platform.active:
        flash(f"{platform.name} is not waiting for approval.", "error")
        return redirect(url_for(".inbox_list"), 303)
    if form.validate_on_submit():
        registration.approve(platform)
        inbox.resolve_for(platform)
        db.session.commit()
        flash(f"Approved {platform.name}: launches from it are accepted now.")
        return redirect(url_for(".inbox_list"), 303)
    return render_template("admin/inbox/confirm.html", form=form, entry=None, action="approve",
                           platform=platform)

