"""Media forms: the deep-linking picker and its filters."""

from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectMultipleField, StringField
from wtforms.validators import Optional

from ..services.deep_linking import SCOPES

SCOPE_LABELS = {"all": "All I may use", "course": "This course", "own": "My media",
                "public": "Public media"}


class PickerFilterForm(FlaskForm):
    """The picker's search and scope, in the query string."""

    class Meta:
        csrf = False

    q = StringField("Search title and description", validators=[Optional()])
    scope = StringField("Show", default="all")
    page = IntegerField(default=1, validators=[Optional()])

    def clean_scope(self) -> str:
        return self.scope.data if self.scope.data in SCOPES else "all"


class PickerForm(FlaskForm):
    """The chosen items (repeatable `media_ids`), or a cancel."""

    media_ids = SelectMultipleField(coerce=int, validate_choice=False)
    action = StringField()
