"""Admin forms: sign-in, platforms, role mappings."""

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    HiddenField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional

from ..fields import bounded_int
from ..models import GlobalRole, GroupRole, User

LAUNCH_LABEL_LENGTH = 80  # characters of a logged launch's roles shown in the simulator's menu


def optional_id(value) -> int | None:
    """A menu choice naming a row, or None for none; ValueError for one no table can hold."""
    return None if value in (None, "") else bounded_int(value)


def shorten(text: str, length: int) -> str:
    return text if len(text) <= length else text[:length - 1] + "…"


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=150)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=500)])
    next = HiddenField()


class ActionForm(FlaskForm):
    """A button that POSTs (sign out, activate, refresh keys): just the CSRF token."""


class PlatformForm(FlaskForm):
    """A platform registration, laid out in the order of Moodle's "Tool configuration details"."""

    name = StringField("Name", validators=[DataRequired(), Length(max=255)],
                       description='How this LMS is called here, e.g. "Moodle Production".')
    moodle_site = StringField(
        "Moodle site address", validators=[Optional(), Length(max=1024)],
        description="Optional: a Moodle's address (e.g. https://lms.example.edu/moodle) fills "
                    "Platform ID and the three URLs below when they are empty.")
    platform_id = StringField("Platform ID", validators=[Optional(), Length(max=255)],
                              description="The issuer: Moodle's site address, exactly.")
    client_id = StringField("Client ID", validators=[DataRequired(), Length(max=255)])
    deployment_ids = TextAreaField(
        "Deployment ID", validators=[Optional()],
        description="One per line. Launches with any other deployment are refused.")
    key_set_url = StringField("Public keyset URL", validators=[Optional(), Length(max=1024)])
    auth_token_url = StringField("Access token URL", validators=[Optional(), Length(max=1024)])
    auth_login_url = StringField("Authentication request URL",
                                 validators=[Optional(), Length(max=1024)])
    auth_audience = StringField(
        "Token audience", validators=[Optional(), Length(max=1024)],
        description="Leave empty for Moodle (the access token URL is used).")
    enable_nrps = BooleanField("Sync course rosters (Names and Role Provisioning)", default=True)
    enable_deep_linking = BooleanField("Enable deep linking (choosing media)", default=True)
    auto_create_categories = BooleanField("Create a course space on the first launch",
                                          default=True)
    auto_create_users = BooleanField("Create users on their first launch", default=True)
    auto_sync_roles = BooleanField("Apply role changes from the LMS on every launch",
                                   default=True)
    remove_from_groups_on_unenroll = BooleanField("Remove people who left the course")
    active = BooleanField("Active", default=True)

    def data_for_service(self) -> dict:
        """The form's values in the shape services.platforms expects."""
        data = {k: v for k, v in self.data.items() if k not in ("csrf_token", "moodle_site")}
        data["deployment_ids"] = (self.deployment_ids.data or "").splitlines()
        return data


class ConfirmDeleteForm(FlaskForm):
    confirm_name = StringField("Type the platform's name to confirm",
                               validators=[DataRequired()])


class RoleMappingForm(FlaskForm):
    lti_role = StringField(
        "LTI role", validators=[DataRequired(), Length(max=255)],
        description="A full URI (http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor) "
                    "or a short name (Instructor): either matches launches sending the other.")
    global_role = SelectField("Global role", choices=[SelectChoice("", "(adds nothing)")] + [
        SelectChoice(r.value, r.value) for r in GlobalRole])
    group_role = SelectField("Course role", choices=[SelectChoice("", "(adds nothing)")] + [
        SelectChoice(r.value, r.value) for r in GroupRole])
    simulate_roles = TextAreaField(
        "Try it with these roles", validators=[Optional()],
        description="One per line: shows what a launch gets with this mapping before saving.")
    action = StringField()


class SimulatorForm(FlaskForm):
    class Meta:
        csrf = False

    roles = TextAreaField("LTI roles", validators=[Optional()], render_kw={"rows": 3},
                          description="One per line, as a launch sends them.")
    launch = SelectField("Or a logged launch", coerce=optional_id, validate_choice=False)

    def offer(self, launches: list[tuple[int, list[str]]]) -> "SimulatorForm":
        """Offer these logged launches (id, roles) in the launch menu."""
        self.launch.choices = [SelectChoice("", "—")] + [
            SelectChoice(id_, f"#{id_}: {shorten(', '.join(roles), LAUNCH_LABEL_LENGTH)}"
                         if roles else f"#{id_}: no roles")
            for id_, roles in launches]
        return self


class UserAccessForm(FlaskForm):
    """One user's global role and active flag: a row of the users page, its fields named after
    the user (the page's one-click CSRF token guards the POST)."""

    class Meta:
        csrf = False

    global_role = SelectField("Global role", choices=[SelectChoice(r.value, r.value)
                                                      for r in GlobalRole])
    active = BooleanField("Active")

    @classmethod
    def of(cls, user: User) -> "UserAccessForm":
        return cls(prefix=f"user-{user.id}-",
                   data={"global_role": user.global_role.value, "active": user.active})
