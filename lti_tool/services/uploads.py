"""Resumable uploads (tus 1.0): the upload's row, its part file, and the item it becomes."""

from __future__ import annotations

import base64
import binascii
import fcntl
import logging
import os
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, select

from ..errors import ValidationError, human_size
from ..extensions import db
from ..models import Category, Job, Media, Upload, User, Visibility, utcnow
from . import media, processing, users
from .media import CHUNK, EXTENSIONS

log = logging.getLogger(__name__)

PARTS = ".uploads"  # folder under the media root holding the part files
HEAD_BYTES = 512  # bytes `media.sniff` needs to recognise a file
MAX_DESCRIPTION = 10_000  # characters, as the upload form allows
# The upload form's words for a refused type (media.store_file says the same).
REFUSED_TYPE = "This file type is not accepted: upload video, audio, an image or a PDF."


class UploadRefused(Exception):
    """A tus request the upload cannot take: `status` is the HTTP answer, `message` a sentence
    for the teacher."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def sentence(message: str) -> str:
    """A service's message (`the title is required`) as a sentence on its own."""
    message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


def parse_metadata(header: str | None) -> dict[str, str]:
    """tus `Upload-Metadata`: comma-separated `key base64value` pairs (the value may be absent)."""
    values: dict[str, str] = {}
    for pair in (header or "").split(","):
        if not pair.strip():
            continue
        key, _, encoded = pair.strip().partition(" ")
        try:
            values[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise UploadRefused(400, "The upload's details could not be read: reload the page "
                                     "and try again.") from None
    return values


def create_upload(user: User, length: int | None, metadata: dict[str, str], *,
                  categories: list[Category], max_bytes: int) -> Upload:
    """A new upload of `length` bytes with the upload form's details, checked as the form
    checks them (flushed; the caller commits). Raises UploadRefused."""
    if length is None or length < 0:
        raise UploadRefused(400, "The file's size is missing: reload the page and try again.")
    if length > max_bytes:
        raise UploadRefused(413, f"The file is larger than the limit of {human_size(max_bytes)}. "
                                 "Nothing was saved.")
    if length == 0:
        raise UploadRefused(415, REFUSED_TYPE)
    try:
        title = media._checked_title(metadata.get("title"))
    except ValidationError as e:
        raise UploadRefused(400, sentence(e.message)) from None
    description = metadata.get("description", "")
    if len(description) > MAX_DESCRIPTION:
        raise UploadRefused(400, f"The description is longer than {MAX_DESCRIPTION} characters.")
    category = next((c for c in categories if str(c.id) == metadata.get("category")), None)
    if category is None:
        raise UploadRefused(400, "Choose one of the courses you may add media to.")
    try:
        visibility = Visibility(metadata.get("visibility") or Visibility.MEMBERS.value)
    except ValueError:
        raise UploadRefused(400, "Choose who can see the item.") from None
    details = {"title": title, "description": description, "visibility": visibility.value,
               "filename": media.display_filename(metadata.get("filename"))}
    if users.is_safe_next(metadata.get("next")):
        details["next"] = metadata["next"]
    upload = Upload(id=secrets.token_urlsafe(24), user=user, category=category, length=length,
                    offset=0, details=details)
    db.session.add(upload)
    db.session.flush()
    return upload


def is_complete(upload: Upload) -> bool:
    return upload.media_id is not None


def expires_at(upload: Upload, expiry: timedelta) -> datetime:
    """When an unfinished upload untouched since its last chunk is given up."""
    return upload.updated_at + expiry


def find_upload(upload_id: str, user: User, expiry: timedelta,
                now: datetime | None = None) -> Upload | None:
    """The user's own upload, unless it expired (others' uploads are not found either)."""
    upload = db.session.get(Upload, upload_id) if len(upload_id) <= 64 else None
    if upload is None or upload.user_id != user.id:
        return None
    if not is_complete(upload) and expires_at(upload, expiry) < (now or utcnow()):
        return None
    return upload


def part_path(root: str, upload_id: str) -> Path:
    return Path(root) / PARTS / f"{upload_id}.part"


@contextmanager
def locked(root: str, upload: Upload) -> Iterator[BinaryIO]:
    """The upload's part file (created if need be), locked for this request alone: two
    requests writing one upload at once would interleave their bytes. Raises UploadRefused
    (423) while another request holds it."""
    path = part_path(root, upload.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as part:
        try:
            # flock locks the open file itself: threads of one process exclude each other too.
            fcntl.flock(part.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UploadRefused(423, "This upload is busy receiving another part: it carries "
                                     "on shortly.") from None
        yield part


def sync_offset(upload: Upload, root: str) -> int:
    """The upload's offset, taken from the bytes that reached its part file when no request is
    writing it (a request cut off, or a crash, may have written more than was recorded)."""
    path = part_path(root, upload.id)
    if is_complete(upload) or not path.exists():
        return upload.offset
    try:
        with locked(root, upload) as part:
            _record(upload, part.seek(0, os.SEEK_END))
    except UploadRefused:  # being written: the recorded offset stands for now
        pass
    return upload.offset


def _record(upload: Upload, offset: int) -> None:
    if upload.offset != offset:
        upload.offset = offset
        db.session.flush()


def receive(upload: Upload, stream: BinaryIO, part: BinaryIO, offset: int | None,
            content_length: int | None) -> None:
    """Append a PATCH's bytes at `offset` to the locked part file, in CHUNK reads and never
    past the announced length (flushed; the caller commits).

    A connection dropped midway keeps what arrived: the offset records the bytes written. The
    type is sniffed as soon as the file's first bytes are in. Raises UploadRefused: 409 for an
    offset other than the upload's, 400 for more bytes than announced, 415 for a refused type
    (the caller then discards the upload).
    """
    written = part.seek(0, os.SEEK_END)
    _record(upload, written)
    if offset != written:
        raise UploadRefused(409, f"The upload continues from byte {written}, not {offset}.")
    remaining = upload.length - written
    if content_length is not None and content_length > remaining:
        raise UploadRefused(400, "This part goes beyond the file's announced size.")
    try:
        while remaining > 0:
            try:
                chunk = stream.read(min(CHUNK, remaining))
            except Exception as e:  # the connection dropped: each server says so its own way
                log.info("Upload %s cut off at byte %d (%s)", upload.id, written,
                         type(e).__name__)
                break
            if not chunk:
                break
            part.write(chunk)
            written += len(chunk)
            remaining -= len(chunk)
            if upload.mime_type is None and written >= min(HEAD_BYTES, upload.length):
                part.flush()
                upload.mime_type = media.sniff(os.pread(part.fileno(), HEAD_BYTES, 0))
                if upload.mime_type is None:
                    raise UploadRefused(415, REFUSED_TYPE)
    finally:
        part.flush()
        os.fsync(part.fileno())
        _record(upload, written)


def finish(upload: Upload, root: str) -> tuple[Media, Job | None]:
    """Turn a complete upload into its item: move the part file into place under a generated
    name, add the item, queue its processing, and commit (then `jobs.dispatch(job)`).

    If any step fails, neither a file nor a row of this upload is left (the teacher uploads
    again), and the error is re-raised.
    """
    upload_id = upload.id
    name = uuid.uuid4().hex
    relative = f"{name[:2]}/{name}.{EXTENSIONS[upload.mime_type]}"
    files = [relative]
    details = upload.details or {}
    try:
        target = media.media_root(root) / relative
        target.parent.mkdir(exist_ok=True)
        os.replace(part_path(root, upload_id), target)
        item = media.add_stored_media(
            root, relative, upload.mime_type, upload.length, title=details.get("title", ""),
            original_filename=details.get("filename", ""),
            description=details.get("description", ""), owner=upload.user,
            category=upload.category, visibility=Visibility(details.get("visibility")),
        )
        files = media.stored_files(item)
        upload.media_id = item.id
        job = processing.queue_processing(item)
        db.session.commit()
    except Exception:
        db.session.rollback()
        for path in files:
            media.discard_file(root, path)
        part_path(root, upload_id).unlink(missing_ok=True)
        db.session.execute(delete(Upload).where(Upload.id == upload_id))
        db.session.commit()
        raise
    log.info("Upload %s became media %s", upload_id, item.id)
    return item, job


def discard(upload: Upload, root: str) -> None:
    """Remove an upload's row (flushed) and its part file."""
    part_path(root, upload.id).unlink(missing_ok=True)
    db.session.delete(upload)
    db.session.flush()


def remove_abandoned(root: str, older_than: timedelta, now: datetime | None = None) -> int:
    """Remove unfinished uploads untouched for `older_than` with their part files, part files
    of no upload as old, and finished uploads' rows as old (flushed; the caller commits).

    Returns how many unfinished uploads (rows or lone part files) were removed.
    """
    cutoff = (now or utcnow()) - older_than
    removed = 0
    for upload in db.session.scalars(select(Upload).where(Upload.updated_at < cutoff)):
        removed += not is_complete(upload)
        discard(upload, root)
    folder = Path(root) / PARTS
    if folder.is_dir():
        known = set(db.session.scalars(select(Upload.id)))
        for path in folder.glob("*.part"):
            try:
                stale = path.stat().st_mtime < cutoff.timestamp()
            except FileNotFoundError:
                continue
            if stale and path.stem not in known:
                path.unlink(missing_ok=True)
                removed += 1
    if removed:
        log.info("Removed %d abandoned uploads", removed)
    return removed
