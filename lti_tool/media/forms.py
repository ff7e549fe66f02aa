"""Media forms: upload, edit, delete, the deep-linking picker and its filters."""

import re

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional

from ..errors import human_size
from ..fields import IdField, bounded_int
from ..models import Category, Visibility
from ..services.deep_linking import SCOPES
from ..services.media import MAX_CAPTIONS, MAX_TITLE

SCOPE_LABELS = {"all": "All I may use", "course": "This course", "own": "My media",
                "public": "Public media"}
# The same words as the cards' "Visible to: course members / everyone / only me"
# (templating.AUDIENCE).
VISIBILITY_LABELS = {
    Visibility.MEMBERS: "Course members",
    Visibility.PUBLIC: "Everyone",
    Visibility.PRIVATE: "Only me",
}
VISIBILITY_HELP = ("Course members: the course's teachers and students. Everyone: anyone who "
                   "opens the tool, and teachers of other courses may link it. Only me: just you.")
# What the file chooser offers: the types services.media.sniff recognises (the file's bytes
# decide; this only spares people choosing a file that would be refused).
MEDIA_ACCEPT = ",".join([
    "video/mp4", "video/webm", "video/ogg", "video/quicktime", "audio/*", "image/png",
    "image/jpeg", "image/gif", "image/webp", "application/pdf", ".mp4", ".m4v", ".mov", ".webm",
    ".ogv", ".ogg", ".oga", ".mp3", ".m4a", ".wav", ".flac", ".png", ".jpg", ".jpeg", ".gif",
    ".webp", ".pdf",
])
CAPTIONS_ACCEPT = ".vtt,text/vtt"


def title_from_filename(name: str) -> str:
    """"lecture_04-intro.final.mp4" -> "lecture 04 intro.final" (as upload.js fills it in)."""
    stem = name.replace("\\", "/").rsplit("/", 1)[-1]
    if "." in stem.strip("."):
        stem = stem.rsplit(".", 1)[0]
    return re.sub(r"\s+", " ", re.sub(r"[_-]+", " ", stem)).strip()[:MAX_TITLE]


class PickerFilterForm(FlaskForm):
    """The picker's search and scope, in the query string."""

    class Meta:
        csrf = False

    q = StringField("Search", validators=[Optional()],
                    render_kw={"type": "search", "placeholder": "Title or description"})
    scope = SelectField("Show", default="all", validate_choice=False,
                        choices=[SelectChoice(v, label) for v, label in SCOPE_LABELS.items()])
    after = IdField(validators=[Optional()])
    selected = IdField(validators=[Optional()])  # the item just uploaded, chosen at once
    # Items chosen on other pages or before a search: they stay chosen (picker.js sends them).
    keep = SelectMultipleField(coerce=bounded_int, validate_choice=False)

    def clean_scope(self) -> str:
        return self.scope.data if self.scope.data in SCOPES else "all"


class PickerForm(FlaskForm):
    """The chosen items (repeatable `media_ids`, and `kept_ids` chosen on other pages), or a
    cancel."""

    media_ids = SelectMultipleField(coerce=bounded_int, validate_choice=False)
    kept_ids = SelectMultipleField(coerce=bounded_int, validate_choice=False)  # other pages'
    action = StringField()


class MediaDetailsForm(FlaskForm):
    """Title, description, course and visibility: shared by upload and edit."""

    title = StringField("Title", validators=[DataRequired(), Length(max=MAX_TITLE)])
    description = TextAreaField("Description", validators=[Optional(), Length(max=10_000)])
    category = SelectField("Course or category", coerce=bounded_int)
    visibility = SelectField(
        "Visible to",
        choices=[SelectChoice(v.value, label) for v, label in VISIBILITY_LABELS.items()],
        default=Visibility.MEMBERS.value,
        description=VISIBILITY_HELP,
    )

    def set_categories(self, categories: list[Category]) -> None:
        self.category.choices = [SelectChoice(c.id, c.title) for c in categories]


class UploadForm(MediaDetailsForm):
    file = FileField(
        "File",
        validators=[FileRequired("Choose a file to upload.")],
        description="Video, audio, an image or a PDF.",
        render_kw={"accept": MEDIA_ACCEPT},
    )

    def validate(self, extra_validators=None) -> bool:
        # Without scripts nobody filled the title in: the file's name is a good start.
        upload = self.file.data
        if not (self.title.data or "").strip() and getattr(upload, "filename", None):
            self.title.data = title_from_filename(upload.filename)
        return super().validate(extra_validators)


class EditForm(MediaDetailsForm):
    captions = FileField(
        "Captions (WebVTT)",
        validators=[Optional()],
        description=f"Optional: a .vtt file of at most {human_size(MAX_CAPTIONS)}; a new one "
                    "replaces the old.",
        render_kw={"accept": CAPTIONS_ACCEPT},
    )


class DeleteForm(FlaskForm):
    """Just the CSRF token: deleting is a POST after a confirmation page."""
