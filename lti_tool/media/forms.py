"""Media forms: upload, edit, delete, the deep-linking picker and its filters."""

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
VISIBILITY_LABELS = {
    Visibility.MEMBERS: "Course members",
    Visibility.PUBLIC: "Everyone signed in (offered to every course)",
    Visibility.PRIVATE: "Only me",
}


class PickerFilterForm(FlaskForm):
    """The picker's search and scope, in the query string."""

    class Meta:
        csrf = False

    q = StringField("Search", validators=[Optional()],
                    render_kw={"type": "search", "placeholder": "Title or description"})
    scope = SelectField("Show", default="all", validate_choice=False,
                        choices=[SelectChoice(v, label) for v, label in SCOPE_LABELS.items()])
    after = IdField(validators=[Optional()])

    def clean_scope(self) -> str:
        return self.scope.data if self.scope.data in SCOPES else "all"


class PickerForm(FlaskForm):
    """The chosen items (repeatable `media_ids`), or a cancel."""

    media_ids = SelectMultipleField(coerce=bounded_int, validate_choice=False)
    action = StringField()


class MediaDetailsForm(FlaskForm):
    """Title, description, course and visibility: shared by upload and edit."""

    title = StringField("Title", validators=[DataRequired(), Length(max=MAX_TITLE)])
    description = TextAreaField("Description", validators=[Optional(), Length(max=10_000)])
    category = SelectField("Course or category", coerce=bounded_int)
    visibility = SelectField(
        "Who can see it",
        choices=[SelectChoice(v.value, label) for v, label in VISIBILITY_LABELS.items()],
        default=Visibility.MEMBERS.value,
    )

    def set_categories(self, categories: list[Category]) -> None:
        self.category.choices = [SelectChoice(c.id, c.title) for c in categories]


class UploadForm(MediaDetailsForm):
    file = FileField(
        "File",
        validators=[FileRequired("Choose a file to upload.")],
        description="Video, audio, an image or a PDF.",
    )


class EditForm(MediaDetailsForm):
    captions = FileField(
        "Captions (WebVTT)",
        validators=[Optional()],
        description=f"Optional: a .vtt file of at most {human_size(MAX_CAPTIONS)}; a new one "
                    "replaces the old.",
    )


class DeleteForm(FlaskForm):
    """Just the CSRF token: deleting is a POST after a confirmation page."""
