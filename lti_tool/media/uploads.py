"""Resumable uploads over the tus 1.0 protocol (core, creation, termination, expiration)."""

import functools
import logging
from datetime import timedelta

from flask import Response, current_app, flash, request, url_for
from flask_login import current_user
from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date

from ..extensions import db
from ..models import Upload
from ..services import access, jobs, uploads
from .views import bp, next_after_upload

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,expiration"
OFFSET_STREAM = "application/offset+octet-stream"


def _plain(status: int, message: str = "", **headers: str) -> Response:
    """A tus answer: the teacher-facing message as plain text (the page shows it)."""
    response = Response(message, status, mimetype="text/plain" if message else None)
    response.headers.update(headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def tus(view):
    """Every tus request but OPTIONS speaks tus 1.0.0 and comes from a signed-in user; refusals
    from the service become their plain-text answers; every answer says the protocol version."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if request.method != "OPTIONS" and request.headers.get("Tus-Resumable") != TUS_VERSION:
            response = _plain(412, "This upload speaks another version of the protocol: "
                                   "reload the page and try again.", **{"Tus-Version": TUS_VERSION})
        elif request.method != "OPTIONS" and not current_user.is_authenticated:
            response = _plain(401, "Please open the media tool again from your course.")
        else:
            try:
                response = view(*args, **kwargs)
            except uploads.UploadRefused as e:
                db.session.rollback()
                response = _plain(e.status, e.message)
            except HTTPException:
                raise
            except Exception:
                log.exception("Upload request failed")
                db.session.rollback()
                response = _plain(500, "The upload could not be saved on our side. Please try "
                                       "again; if it fails again, tell your administrator.")
        response.headers["Tus-Resumable"] = TUS_VERSION
        return response

    return wrapper


def _expiry() -> timedelta:
    return timedelta(hours=current_app.config.get("UPLOAD_EXPIRY_HOURS", 24))


def _own_upload(upload_id: str) -> Upload:
    upload = uploads.find_upload(upload_id, current_user, _expiry())
    if upload is None:
        raise uploads.UploadRefused(404, "This upload is not here any more: choose the file "
                                         "again to upload it.")
    return upload


def _state(upload: Upload, offset: int, status: int = 204) -> Response:
    """204 with the upload's offset, and once complete where its item (and the page the
    teacher came from) is.

    Every answer that tells the browser the upload is complete also says so on the next page:
    the answer to the last part may be lost with the connection, and a HEAD or repeated part
    then brings the news (the browser forgets the upload once it has heard it).
    """
    response = _plain(status, **{"Upload-Offset": str(offset),
                              "Upload-Length": str(upload.length)})
    if uploads.is_complete(upload):
        item_url = url_for(".media_detail", id=upload.media_id)
        response.headers["Upload-Media-Location"] = item_url
        response.headers["Upload-Next-Location"] = next_after_upload(
            (upload.details or {}).get("next"), upload.media_id) or item_url
        flash(f"Added “{(upload.details or {}).get('title', '')}”.")
    else:
        response.headers["Upload-Expires"] = http_date(uploads.expires_at(upload, _expiry()))
    return response


@bp.route("/uploads/", methods=["OPTIONS"], provide_automatic_options=False)
@tus
def upload_options():
    return _plain(204, **{"Tus-Version": TUS_VERSION, "Tus-Extension": TUS_EXTENSIONS,
                          "Tus-Max-Size": str(current_app.config["MAX_UPLOAD_BYTES"])})


@bp.post("/uploads/")
@tus
def upload_create():
    """Announce an upload: its size and the upload form's details (checked as the form does)."""
    upload = uploads.create_upload(
        current_user, request.headers.get("Upload-Length", type=int),
        uploads.parse_metadata(request.headers.get("Upload-Metadata")),
        categories=access.upload_categories(current_user),
        max_bytes=current_app.config["MAX_UPLOAD_BYTES"],
    )
    db.session.commit()
    response = _state(upload, 0, 201)
    response.headers["Location"] = url_for(".upload_state", upload_id=upload.id)
    return response


@bp.route("/uploads/<upload_id>", methods=["HEAD"])
@tus
def upload_state(upload_id: str):
    upload = _own_upload(upload_id)
    offset = uploads.sync_offset(upload, current_app.config["MEDIA_ROOT"])
    db.session.commit()
    return _state(upload, offset, 200)


@bp.patch("/uploads/<upload_id>")
@tus
def upload_patch(upload_id: str):
    """Append a part; the last one turns the upload into a media item."""
    upload = _own_upload(upload_id)
    if request.mimetype != OFFSET_STREAM:
        return _plain(415, f"Parts of an upload are sent as {OFFSET_STREAM}.")
    if uploads.is_complete(upload):  # a repeated last part: the item exists already
        return _state(upload, upload.offset)
    root = current_app.config["MEDIA_ROOT"]
    job = None
    with uploads.locked(root, upload) as part:
        try:
            uploads.receive(upload, request.stream, part,
                            request.headers.get("Upload-Offset", type=int),
                            request.content_length)
        except uploads.UploadRefused as e:
            if e.status != 415:
                raise
            uploads.discard(upload, root)
            db.session.commit()
            return _plain(415, e.message)
        if upload.offset == upload.length:
            if not access.can_upload_to(current_user, upload.category):
                uploads.discard(upload, root)
                db.session.commit()
                return _plain(403, "You may no longer add media to this course.")
            _, job = uploads.finish(upload, root)
        else:
            db.session.commit()
    jobs.dispatch(job)
    return _state(upload, upload.offset)


@bp.delete("/uploads/<upload_id>")
@tus
def upload_delete(upload_id: str):
    upload = _own_upload(upload_id)
    root = current_app.config["MEDIA_ROOT"]
    with uploads.locked(root, upload):
        uploads.discard(upload, root)
        db.session.commit()
    return _plain(204)
