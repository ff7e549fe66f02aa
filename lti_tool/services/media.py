"""Media files: type sniffing by content, streamed storage under generated names, new items."""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, BinaryIO

from itsdangerous import BadSignature, URLSafeSerializer
from PIL import Image, ImageOps
from sqlalchemy import func, select

from ..errors import ValidationError, human_size
from ..extensions import db
from ..models import Category, LTIResourceLink, Media, MediaStatus, User, Visibility

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
MAX_TITLE = 255  # characters: Media.title's column
MAX_CAPTIONS = 2 * 1024 * 1024  # bytes
PREVIEW_WIDTH = 320  # pixels: previews fit in a PREVIEW_WIDTH square
PREVIEW_URL_DAYS = 14  # how long a preview URL handed to an LMS keeps working
EXTENSIONS = {
    "video/mp4": "mp4", "video/webm": "webm", "video/ogg": "ogv", "video/quicktime": "mov",
    "audio/mpeg": "mp3", "audio/ogg": "ogg", "audio/wav": "wav", "audio/mp4": "m4a",
    "audio/flac": "flac", "image/png": "png", "image/jpeg": "jpg", "image/gif": "gif",
    "image/webp": "webp", "application/pdf": "pdf",
}


def sniff(head: bytes) -> str | None:
    """The MIME type of a file from its first bytes, if it is one we accept; else None.

    The file name and the browser's Content-Type are never trusted: HTML, SVG and scripts
    have no signature here and are refused.
    """
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in head[:64]:
        return "video/webm"
    if head.startswith(b"OggS"):
        return "video/ogg" if b"\x80theora" in head[:128] else "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    return None


def media_root(root: str) -> Path:
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_file(stream: BinaryIO, root: str, max_bytes: int) -> tuple[str, str, int]:
    """Stream an upload into the media root under a generated name.

    Returns (relative path, MIME type, size). The bytes go to a temporary file first and are
    moved into place only when complete and accepted: a refused, oversized or interrupted
    upload leaves nothing behind. Raises ValidationError on the field `file`.
    """
    base = media_root(root)
    head = stream.read(512)
    mime_type = sniff(head)
    if mime_type is None:
        raise ValidationError(
            "file", "this file type is not accepted: upload video, audio, an image or a PDF"
        )
    name = uuid.uuid4().hex
    relative = f"{name[:2]}/{name}.{EXTENSIONS[mime_type]}"
    target = base / relative
    target.parent.mkdir(exist_ok=True)
    partial = base / f".{name}.part"
    size = 0
    try:
        with open(partial, "xb") as out:
            chunk = head
            while chunk:
                size += len(chunk)
                if size > max_bytes:
                    raise ValidationError(
                        "file", f"the file is larger than the limit of {human_size(max_bytes)}"
                    )
                out.write(chunk)
                chunk = stream.read(CHUNK)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return relative, mime_type, size


def discard_file(root: str, relative: str) -> None:
    """Remove a stored file or folder of files (its database row was not written, or was
    deleted)."""
    path = Path(root) / relative
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def find_or_create_category(title: str) -> Category:
    """The oldest category with this title, or a new topic category."""
    category = db.session.scalar(
        select(Category).where(Category.title == title).order_by(Category.id).limit(1)
    )
    if category is None:
        category = Category(title=title)
        db.session.add(category)
        db.session.flush()
    return category


def add_media(stream: BinaryIO, *, root: str, max_bytes: int, title: str,
              **details: Any) -> Media:
    """Store a file and add its media item (flushed; the caller commits). `details` are
    `add_stored_media`'s: original_filename, description, owner, category, visibility.

    If the caller's commit fails it must call `discard_file(root, media.file_path)`.
    """
    title = _checked_title(title)
    relative, mime_type, size = store_file(stream, root, max_bytes)
    return add_stored_media(root, relative, mime_type, size, title=title, **details)


def add_stored_media(
    root: str,
    relative: str,
    mime_type: str,
    size: int,
    *,
    title: str,
    original_filename: str = "",
    description: str = "",
    owner: User | None = None,
    category: Category | None = None,
    visibility: Visibility = Visibility.MEMBERS,
) -> Media:
    """Add the item of a file already stored at `relative` under the media root (flushed).

    Video and audio start queued for processing (`processing.queue_processing` adds the job);
    images (with their preview) and PDFs are ready at once. If the flush fails, the files go.
    """
    media = Media(
        title=_checked_title(title),
        description=description or "",
        file_path=relative,
        original_filename=display_filename(original_filename),
        mime_type=mime_type,
        size=size,
        owner=owner,
        category=category,
        visibility=visibility,
        status=MediaStatus.QUEUED if needs_processing(mime_type) else MediaStatus.READY,
    )
    media.thumbnail_path = make_preview(root, relative, mime_type)
    db.session.add(media)
    try:
        db.session.flush()
    except Exception:
        for path in stored_files(media):
            discard_file(root, path)
        raise
    log.info("Added media %s (%s, %d bytes)", media.id, mime_type, size)
    return media


def needs_processing(mime_type: str) -> bool:
    """Video and audio are converted into files every browser plays."""
    return mime_type.startswith(("video/", "audio/"))


def _checked_title(title: str | None) -> str:
    """The title without surrounding spaces; ValidationError on `title` if empty or too long."""
    title = (title or "").strip()
    if not title:
        raise ValidationError("title", "a title is required")
    if len(title) > MAX_TITLE:
        raise ValidationError("title", f"the title is longer than {MAX_TITLE} characters")
    return title


def commit_or_discard(root: str, media: Media) -> None:
    """Commit a newly added item; if the commit fails, remove its files and re-raise.

    For the callers of `add_media` (views and commands commit; the files must not outlive a
    row that was never written).
    """
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        for relative in stored_files(media):
            discard_file(root, relative)
        raise


def display_filename(name: str | None) -> str:
    """The last part of an upload's file name, without control characters (PostgreSQL refuses
    NUL in text), cut to its column's size."""
    name = Path((name or "").replace("\\", "/")).name
    return "".join(ch for ch in name if ch.isprintable())[:255]


def preview_name(relative: str) -> str:
    return relative.rsplit(".", 1)[0] + ".preview.jpg"


def make_preview(root: str, relative: str, mime_type: str) -> str | None:
    """A small JPEG preview of an image, never the file itself (downscaled to PREVIEW_WIDTH).

    Returns the preview's path, or None where the kind's placeholder serves instead: a
    video's preview frame comes from its processing job (services/processing.py), not from
    the upload request.
    """
    if mime_type.startswith("image/"):
        return _image_preview(root, relative)
    return None


def _image_preview(root: str, relative: str) -> str | None:
    preview = preview_name(relative)
    try:
        with warnings.catch_warnings():
            # An image of more pixels than Pillow's bomb limit gets the placeholder.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(Path(root) / relative) as image:
                image.draft("RGB", (PREVIEW_WIDTH, PREVIEW_WIDTH))
                small = ImageOps.exif_transpose(image)
                small.thumbnail((PREVIEW_WIDTH, PREVIEW_WIDTH))
                rgba = small.convert("RGBA")
                flat = Image.new("RGB", rgba.size, "white")
                flat.paste(rgba, mask=rgba.getchannel("A"))
                # A new image: no EXIF (camera, GPS) goes into the preview.
                flat.save(Path(root) / preview, "JPEG", quality=80)
    except Exception as e:  # Pillow raises many kinds of error on broken or hostile files
        log.warning("No preview for %s: %s", relative, type(e).__name__)
        discard_file(root, preview)
        return None
    return preview


def preview_file(media: Media) -> str | None:
    """The item's preview to serve; None for the placeholder. Items stored before previews
    were made recorded the image itself as its preview: that is never served as one."""
    if media.thumbnail_path and media.thumbnail_path != media.file_path:
        return media.thumbnail_path
    return None


def placeholder(mime_type: str) -> str:
    """The static placeholder image of a kind of media."""
    kind = mime_type.split("/")[0]
    return f"img/{kind if kind in ('video', 'audio', 'image') else 'pdf'}.svg"


def set_captions(media: Media, stream: BinaryIO, root: str) -> None:
    """Store WebVTT captions for an item (flushed). Raises ValidationError on `captions`."""
    raw = stream.read(MAX_CAPTIONS + 1)
    if len(raw) > MAX_CAPTIONS:
        raise ValidationError(
            "captions", f"the captions file is larger than {human_size(MAX_CAPTIONS)}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError("captions", "captions must be a UTF-8 WebVTT file") from None
    if not text.startswith("WEBVTT"):
        raise ValidationError("captions", "this is not a WebVTT file (it must start with WEBVTT)")
    relative = media.file_path.rsplit(".", 1)[0] + ".vtt"
    (Path(root) / relative).write_text(text, encoding="utf-8")
    media.captions_path = relative
    db.session.flush()


def stored_files(media: Media) -> list[str]:
    """Every file of an item: the media, its preview (when not the media itself), captions,
    and the folder of its processed renditions (playback file, HLS, poster)."""
    return list(dict.fromkeys(
        p for p in (media.file_path, media.thumbnail_path, media.captions_path,
                    media.renditions_path) if p
    ))


def update_media(media: Media, *, title: str, description: str, category: Category | None,
                 visibility: Visibility) -> Media:
    """Change an item's details (flushed)."""
    media.title, media.description = _checked_title(title), description
    media.category, media.visibility = category, visibility
    db.session.flush()
    return media


def links_to(media: Media) -> int:
    """How many course links open this item."""
    return db.session.scalar(
        select(func.count()).select_from(LTIResourceLink).where(
            LTIResourceLink.media_id == media.id)
    )


def delete_media(media: Media) -> list[str]:
    """Delete an item's row (flushed); links to it fall back to their course page (SET NULL).

    Returns its files' paths: remove them with `discard_file` once the caller has committed.
    """
    files = stored_files(media)
    db.session.delete(media)
    db.session.flush()
    log.info("Deleted media %s %r", media.id, media.title)
    return files


def file_path(root: str, media: Media, relative: str | None = None) -> Path:
    """Where a file of the item lives: the media itself unless `relative` names another."""
    return Path(root) / (relative or media.file_path)


PREVIEW_SALT = "media-preview"


def _reach(media: Media) -> list:
    """Who may see the item: a preview token is only good while this stays the same."""
    return [media.visibility.value, media.category_id]


def preview_token(media: Media, secret: str, now: float | None = None) -> str:
    """A token that lets an LMS show one item's preview without a session in the tool.

    It signs the item's id, its reach (visibility and course) and an expiry PREVIEW_URL_DAYS
    ahead: it stops working when it expires, when the item is deleted (ids are never reused)
    or moved to another course or visibility, and it never works for a private item.
    """
    issued = time.time() if now is None else now
    expires = int(issued) + PREVIEW_URL_DAYS * 24 * 3600
    return URLSafeSerializer(secret, salt=PREVIEW_SALT).dumps([media.id, _reach(media), expires])


def preview_token_valid(token: str, media: Media, secret: str, now: float | None = None) -> bool:
    """Whether `token` still opens this item's preview (see `preview_token`)."""
    if not token:
        return False
    try:
        media_id, reach, expires = URLSafeSerializer(secret, salt=PREVIEW_SALT).loads(token)
    except (BadSignature, TypeError, ValueError):
        return False
    return (
        media_id == media.id
        and reach == _reach(media)
        and media.visibility is not Visibility.PRIVATE
        and isinstance(expires, int)
        and (time.time() if now is None else now) < expires
    )
