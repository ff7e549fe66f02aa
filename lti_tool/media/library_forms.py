"""The course page's and one's own media's search and sort, in the query string."""

from flask_wtf import FlaskForm
from wtforms import SelectChoice, SelectField, StringField
from wtforms.validators import Length, Optional

from ..services.access import SORTS

SORT_LABELS = {"newest": "Newest first", "title": "Title A–Z"}


class LibraryFilterForm(FlaskForm):
    """`q`, `sort` (newest or title) and the page's cursor `after`; a bad value is no filter."""

    class Meta:
        csrf = False

    q = StringField("Search", validators=[Optional(), Length(max=200)],
                    render_kw={"type": "search", "placeholder": "Title or description"})
    sort = SelectField("Sort", default="newest", validate_choice=False,
                       choices=[SelectChoice(v, label) for v, label in SORT_LABELS.items()],
                       render_kw={"data-autosubmit": ""})
    after = StringField(validators=[Optional(), Length(max=400)])

    def clean_q(self) -> str:
        return (self.q.data or "").strip()[:200]

    def clean_sort(self) -> str:
        return self.sort.data if self.sort.data in SORTS else "newest"

    def clean_after(self) -> str | None:
        return (self.after.data or "")[:400] or None

    def args(self, **changes) -> dict:
        """The filters a pager keeps (never the raw query string), with `changes` (a None
        drops that filter)."""
        args = {"q": self.clean_q() or None,
                "sort": self.clean_sort() if self.clean_sort() != "newest" else None}
        return {k: v for k, v in (args | changes).items() if v is not None}
