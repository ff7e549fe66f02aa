"""The launch-log viewer's filters (a GET form: views can be bookmarked and shared)."""

from datetime import date, timedelta

from flask_wtf import FlaskForm
from wtforms import DateField, StringField
from wtforms.validators import Optional

from ..fields import IdField
from ..models import LaunchType
from ..services.audit import Filters

LAST_DAY = date.max - timedelta(days=1)


class AuditFilterForm(FlaskForm):
    class Meta:
        csrf = False

    platform = IdField("Platform", validators=[Optional()])
    outcome = StringField("Outcome", validators=[Optional()])  # "", "success", "failure"
    category = StringField("Error category", validators=[Optional()])
    launch_type = StringField("Launch type", validators=[Optional()])
    user = StringField("User (username or LTI sub)", validators=[Optional()])
    course = StringField("Course (context id or title)", validators=[Optional()])
    date_from = DateField("From", validators=[Optional()])
    date_to = DateField("To", validators=[Optional()])
    text = StringField("Text in the error", validators=[Optional()])
    before = IdField(validators=[Optional()])

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
