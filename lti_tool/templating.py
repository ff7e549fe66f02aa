"""Words and numbers as people read them, for the templates: sizes, durations, kinds, reach.

Registered as Jinja filters by `init_app`; the pages inside the LMS never show MIME types, byte
counts or enum values.
"""

from __future__ import annotations

from flask import Flask

from .errors import human_size
from .models import Visibility

KIND_LABELS = {"video": "Video", "audio": "Audio", "image": "Image", "document": "PDF"}

# Who sees an item, in the words of "Visible to: …" (the upload form's choices say the same).
AUDIENCE = {
    Visibility.MEMBERS: "course members",
    Visibility.PUBLIC: "everyone",
    Visibility.PRIVATE: "only me",
}


def duration(seconds: float | None) -> str:
    """1:05, 12:30, 1:02:03; empty when unknown."""
    if seconds is None:
        return ""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def duration_words(seconds: float | None) -> str:
    """What a screen reader says for a duration: '1 hour 2 minutes', '5 minutes', '40 seconds'."""
    if seconds is None:
        return ""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(hours, "hour"), (minutes, "minute")] if total >= 60 else [(secs, "second")]
    return " ".join(f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n) or "0 seconds"


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, "File")


def audience(visibility: Visibility | str) -> str:
    """'course members', 'everyone', 'only me'."""
    return AUDIENCE.get(Visibility(visibility), "")


def init_app(app: Flask) -> None:
    app.add_template_filter(human_size, "filesize")
    app.add_template_filter(duration)
    app.add_template_filter(duration_words)
    app.add_template_filter(kind_label)
    app.add_template_filter(audience)
