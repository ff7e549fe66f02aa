"""Playing an item: its served files (video, HLS, poster, captions...), status and retry."""

import logging
import mimetypes
import os
import unicodedata
from pathlib import Path
from urllib.parse import quote

from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import login_required
from werkzeug.datastructures import Headers
from werkzeug.security import safe_join

from ..extensions import db
from ..models import Media, MediaStatus
from ..services import jobs, media, processing
from .views import bp, manageable_media, player_context, status_report, viewable_media

log = logging.getLogger(__name__)

# Served user files may be anything a browser renders (a PDF with scripts): never with the
# tool's origin. Set here, the page policy (security.py, setdefault) leaves it alone.
USER_FILE_POLICY = "sandbox"
# The files of an HLS rendition and the types players expect of them; nothing else is served.
HLS_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".m4s": "video/iso.segment",
             ".mp4": "video/mp4", ".ts": "video/mp2t"}


def _send_user_file(path: Path, mimetype: str | None = None, max_age: int = 3600,
                    download_name: str | None = None):
    """A stored file, with Range support, for this viewer only, never run as a page; with
    `download_name`, as a download of that name.

    With MEDIA_ACCEL_REDIRECT set, the access check is all the worker does: its empty answer
    names the file in X-Accel-Redirect and nginx sends the bytes (Range included).
    """
    if not path.is_file():
        abort(404, description="The file of this media item is missing.")
    prefix = current_app.config.get("MEDIA_ACCEL_REDIRECT")
    uri = _accel_uri(prefix, current_app.config["MEDIA_ROOT"], path) if prefix else None
    if uri is not None:
        response = Response(mimetype=mimetype or _guess_type(path))
        response.headers["X-Accel-Redirect"] = uri
        response.headers["Content-Disposition"] = _disposition(download_name)
    else:
        response = send_file(path, mimetype=mimetype, conditional=True, etag=True,
                             download_name=download_name or path.name,
                             as_attachment=download_name is not None)
        if download_name is None:
            response.headers["Content-Disposition"] = "inline"
    # nginx drops this header on X-Accel-Redirect: its internal location adds it (README).
    response.headers["Content-Security-Policy"] = USER_FILE_POLICY
    # Access depends on who asks: browsers may keep it, shared caches may not.
    response.cache_control.private = True
    response.cache_control.public = False
    response.cache_control.max_age = max_age
    return response


def _accel_uri(prefix: str, root: str, path: Path) -> str | None:
    """`path` under the nginx location `prefix` that aliases MEDIA_ROOT, URL-quoted; None for a
    file outside MEDIA_ROOT (it is streamed instead: nginx is never sent elsewhere)."""
    for base, file in ((os.path.normpath(root), os.path.normpath(path)),
                       (os.path.realpath(root), os.path.realpath(path))):
        if file.startswith(base.rstrip(os.sep) + os.sep):
            return prefix + quote(file[len(base.rstrip(os.sep)) + 1:].replace(os.sep, "/"))
    log.warning("A media file lies outside MEDIA_ROOT; streamed by the worker: %s", path)
    return None


def _guess_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _disposition(download_name: str | None) -> str:
    """Content-Disposition as send_file words it: inline, or an attachment with its name (an
    ASCII fallback and the UTF-8 name, RFC 6266)."""
    if download_name is None:
        return "inline"
    try:
        download_name.encode("ascii")
    except UnicodeEncodeError:
        simple = unicodedata.normalize("NFKD", download_name).encode("ascii", "ignore").decode()
        names = {"filename": simple, "filename*": "UTF-8''" + quote(download_name,
                                                                      safe="!#$&+-.^_`|~")}
    else:
        names = {"filename": download_name}
    headers = Headers()
    headers.set("Content-Disposition", "attachment", **names)
    return headers["Content-Disposition"]


@bp.get("/<int:id>/player")
@bp.get("/<int:id>/pass/<token>/player")  # token: services.media_pass, read by the login
@login_required
def media_player(id: int, token: str | None = None):
    """Just the player (or the processing notice): what the page swaps in when the item's
    processing ends, without a reload."""
    item = viewable_media(id)
    return render_template("media/_player.html", **player_context(item))


@bp.get("/<int:id>/status")
@bp.get("/<int:id>/pass/<token>/status")
@login_required
def media_status(id: int, token: str | None = None):
    """The item's processing status, for the page's poll."""
    item = viewable_media(id)
    response = current_app.json.response(status_report(item))
    response.cache_control.no_store = True
    return response


@bp.post("/<int:id>/retry")
@login_required
def media_retry(id: int):
    """Process a failed item again (owner, course managers, editors and admins)."""
    item = manageable_media(id)
    if item.status is not MediaStatus.FAILED:
        flash(f"“{item.title}” has not failed: there is nothing to try again.")
        return redirect(url_for(".media_detail", id=id), 303)
    job = processing.queue_processing(item)
    db.session.commit()
    jobs.dispatch(job)
    flash("Processing again")
    return redirect(url_for(".media_detail", id=id), 303)


@bp.get("/<int:id>/file")
@bp.get("/<int:id>/pass/<token>/file")
@login_required
def media_file(id: int, token: str | None = None):
    """What the player plays, with HTTP Range support (video seeking), checked on every
    request: the processed MP4 (or .m4a) once ready, else the file as uploaded."""
    item = viewable_media(id)
    root = current_app.config["MEDIA_ROOT"]
    if item.is_ready and item.playback_path:
        playback_type = "audio/mp4" if item.playback_path.endswith(".m4a") else "video/mp4"
        return _send_user_file(media.file_path(root, item, item.playback_path), playback_type)
    return _send_user_file(media.file_path(root, item), item.mime_type)


@bp.get("/<int:id>/original")
@login_required
def media_original(id: int):
    """The file as uploaded, as a download under its uploaded name, for those who manage it."""
    item = manageable_media(id)
    extension = media.EXTENSIONS.get(item.mime_type, "bin")
    return _send_user_file(media.file_path(current_app.config["MEDIA_ROOT"], item),
                           item.mime_type,
                           download_name=item.original_filename or f"media-{id}.{extension}")


@bp.get("/<int:id>/hls/<path:name>")
@bp.get("/<int:id>/pass/<token>/hls/<path:name>")  # the segments' relative addresses keep it
@login_required
def media_hls(id: int, name: str, token: str | None = None):
    """The master playlist, rung playlists, init and media segments of a ready item."""
    item = viewable_media(id)
    if not (item.is_ready and item.hls_path):
        abort(404)
    root = current_app.config["MEDIA_ROOT"]
    path = _hls_file(media.file_path(root, item, item.hls_path).parent, name)
    # Playlists are small and change with a reprocessing; segments never change.
    max_age = 0 if path.suffix == ".m3u8" else 3600
    return _send_user_file(path, HLS_TYPES[path.suffix], max_age=max_age)


def _hls_file(folder: Path, name: str) -> Path:
    """`name` inside the HLS folder, if it is one of its files: else 404 (no `..`, absolute
    paths, other kinds of file, or symbolic links leading out)."""
    joined = safe_join(str(folder), name)
    if joined is None or Path(joined).suffix not in HLS_TYPES:
        abort(404)
    path = Path(joined).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        abort(404)
    return path


@bp.get("/<int:id>/poster")
@bp.get("/<int:id>/pass/<token>/poster")
@login_required
def media_poster(id: int, token: str | None = None):
    """The full-size poster frame of a processed video; else the preview, or the placeholder."""
    item = viewable_media(id)
    if item.is_ready and item.poster_path:
        return _send_user_file(
            media.file_path(current_app.config["MEDIA_ROOT"], item, item.poster_path),
            "image/jpeg")
    return _preview_response(item)


@bp.get("/<int:id>/thumbnail")
def media_thumbnail(id: int):
    """The preview image: for a signed-in viewer, or with the signed token that deep-linking
    responses carry (an LMS shows the preview without a session in the tool)."""
    item = db.get_or_404(Media, id)
    if not media.preview_token_valid(request.args.get("token", ""), item,
                                     current_app.config["SECRET_KEY"]):
        item = viewable_media(id)
    return _preview_response(item)


def _preview_response(item: Media):
    preview = media.preview_file(item)
    if preview is None:
        return redirect(url_for("static", filename=media.placeholder(item.mime_type)))
    return _send_user_file(media.file_path(current_app.config["MEDIA_ROOT"], item, preview),
                           "image/jpeg")


@bp.get("/<int:id>/captions.vtt")
@bp.get("/<int:id>/pass/<token>/captions.vtt")
@login_required
def media_captions(id: int, token: str | None = None):
    item = viewable_media(id)
    if not item.captions_path:
        abort(404)
    return _send_user_file(
        media.file_path(current_app.config["MEDIA_ROOT"], item, item.captions_path),
        "text/vtt", max_age=0)
