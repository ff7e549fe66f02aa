"""The launch-log viewer's filters (a GET form: views can be bookmarked and shared)."""

from datetime import date, timedelta

from flask_wtf import FlaskForm
from wtforms import DateField, SelectChoice, SelectField, StringField
from wtforms.validators import Optional

from ..admin.forms import optional_id
from ..fields import IdField
from ..models import LaunchType
from ..services.audit import Filters

LAST_DAY = date.max - timedelta(days=1)
OUTCOMES = [SelectChoice("", "All"), SelectChoice("success", "Succeeded"),
            SelectChoice("failure", "Failed")]


class AuditFilterForm(FlaskForm):
    class Meta:
        csrf = False

    platform = SelectField("Platform", coerce=optional_id, validate_choice=False)
    outcome = SelectField("Outcome", choices=OUTCOMES, validate_choice=False)
    category = SelectField("Error", validate_choice=False)
    launch_type = SelectField("Type", validate_choice=False, choices=[SelectChoice("", "Any")] + [
        SelectChoice(t.value, t.value) for t in LaunchType])
    user = StringField("User", validators=[Optional()],
                       render_kw={"placeholder": "username or sub"})
    course = StringField("Course", validators=[Optional()],
                         render_kw={"placeholder": "context id or title"})
    date_from = DateField("From", validators=[Optional()])
    date_to = DateField("To", validators=[Optional()])
    text = StringField("Text", validators=[Optional()],
                       render_kw={"placeholder": "in the error message"})
    before = IdField(validators=[Optional()])

    def offer(self, platforms, categories) -> "AuditFilterForm":
        """Fill the choices of the platform and error menus."""
        self.platform.choices = [SelectChoice("", "All")] + [SelectChoice(p.id, p.name)
                                                             for p in platforms]
        self.category.choices = [SelectChoice("", "Any")] + [SelectChoice(c, c)
                                                             for c in categories]
        return self

    FILTER_NAMES = ("platform", "outcome", "category", "launch_type", "user", "course",
                    "date_from", "date_to", "text")

    def link_args(self) -> dict[str, str]:
        """The filters for the page's own links (pages, export, chart): validated values under
        the filters' names only, never the raw query string."""
        return {name: str(self[name].data) for name in self.FILTER_NAMES
                if self[name].data not in (None, "")}

    def filters(self) -> Filters:
        launch_type = self.launch_type.data if self.launch_type.data in (
            t.value for t in LaunchType) else None
        return Filters(
            platform_id=self.platform.data,
            success={"success": True, "failure": False}.get(self.outcome.data or ""),
            error_category=(self.category.data or "").strip(),
            launch_type=LaunchType(launch_type) if launch_type else None,
            user=self.user.data or "", course=self.course.data or "",
            date_from=self.date_from.data, text=self.text.data or "",
            # the day after it must exist: 9999-12-31 means "no end"
            date_to=self.date_to.data and min(self.date_to.data, LAST_DAY),
        )
