"""Form fields shared by the blueprints' forms."""

from wtforms import IntegerField

from .security import bounded_int


class IdField(IntegerField):
    """A whole number naming a row (an id, a page's cursor): one no table can hold is no data.

    Such a number would otherwise reach the database (SQLite cannot even bind it) and fail.
    """

    def process_formdata(self, valuelist):
        super().process_formdata(valuelist)
        if self.data is not None:
            try:
                bounded_int(self.data)
            except ValueError:
                self.data = None
                raise ValueError(self.gettext("Not a valid id.")) from None


__all__ = ["IdField", "bounded_int"]
