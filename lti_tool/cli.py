"""Operator commands: create-admin, platform add|list|remove, keys list|rotate|retire|ensure,
media add|reprocess, audit prune, jobs status|retry|sweep, nrps sync."""

import re
import secrets
import sys
from datetime import timedelta

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.exc import IntegrityError

from .errors import ValidationError
from .extensions import db
from .models import Job, JobState, Media, Visibility
from .services import (
    audit,
    inbox,
    jobs,
    keys,
    media,
    nrps,
    nrps_jobs,
    platforms,
    processing,
    registration,
    role_mappings,
    users,
)


class BadInput(click.BadParameter):
    """A bad value: one line on stderr and exit code 2, without click's usage banner."""

    def show(self, file=None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True, file=file)


class UrlType(click.ParamType):
    """An absolute https URL; http only on loopback hosts."""

    name = "url"

    def convert(self, value, param, ctx):
        try:
            return platforms.check_url(value)
        except ValueError as e:
            raise BadInput(str(e), ctx=ctx, param=param) from None


URL = UrlType()


def _bad(error: ValidationError, options: dict[str, str]) -> BadInput:
    return BadInput(error.message, param_hint=f"'{options.get(error.field, error.field)}'")


def _commit_or_fail(message: str) -> None:
    """Commit; a unique rule broken by a concurrent writer becomes a usage error."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise BadInput(message) from None


def _table(rows: list[tuple], headers: tuple[str, ...]) -> str:
    cells = [tuple(str(c) for c in headers)] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _password_option(envvar: str, what: str = "The password"):
    return click.option("--password", envvar=envvar,
                        help=f"{what} (or set {envvar}); asked for when neither is given.")


@click.command("create-admin")
@click.argument("username")
@_password_option("ADMIN_PASSWORD")
@click.option(
    "--if-missing", is_flag=True, help="Leave an existing user alone and exit successfully."
)
@click.option(
    "--generate-password",
    is_flag=True,
    help="Make up a password and print it once, instead of asking for one.",
)
@with_appcontext
def create_admin_command(
    username: str, password: str | None, if_missing: bool, generate_password: bool
) -> None:
    """Create a local admin account USERNAME."""
    if if_missing and users.get_user_by_username(username) is not None:
        click.echo(f"User {username!r} already exists; left unchanged.")
        return
    generated = not password and generate_password
    if generated:
        password = secrets.token_urlsafe(12)
    elif not password:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        users.create_admin(username, password)
    except ValidationError as e:
        raise _bad(e, {"username": "USERNAME", "password": "--password"}) from None
    _commit_or_fail(f"a user named {username!r} already exists")
    click.echo(f"Created admin {username!r}.")
    if generated:
        click.echo(f"Generated password (shown once, write it down): {password}")


@click.command("set-password")
@click.argument("username")
@_password_option("NEW_PASSWORD", "The new password")
@with_appcontext
def set_password_command(username: str, password: str | None) -> None:
    """Give the local account USERNAME a new password; its sessions everywhere end."""
    user = users.get_user_by_username(username)
    if user is None:
        raise click.BadParameter(f"no user named {username!r}", param_hint="USERNAME")
    if not password:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        users.change_password(user, password)
    except ValidationError as e:
        raise _bad(e, {"password": "--password"}) from None
    db.session.commit()
    click.echo(f"New password set for {username!r}; their existing sessions have ended.")


platform_cli = AppGroup("platform", help="Register LMS platforms (issuer + client ID).")

PLATFORM_OPTIONS = {
    "name": "--name",
    "platform_id": "--issuer",
    "client_id": "--client-id",
    "auth_login_url": "--auth-login-url",
    "auth_token_url": "--auth-token-url",
    "key_set_url": "--key-set-url",
    "auth_audience": "--auth-audience",
    "deployment_ids": "--deployment-id",
    "moodle_site": "--moodle-site",
}


@platform_cli.command("add")
@click.option("--name", required=True, help='Display name, e.g. "Moodle Production".')
@click.option("--moodle-site", help="A Moodle site's address: fills the issuer and the three URLs.")
@click.option("--issuer", type=URL, help="Platform ID (iss), e.g. Moodle's URL.")
@click.option("--client-id", required=True, help="Client ID the platform gave this tool.")
@click.option("--auth-login-url", type=URL, help="Authentication request URL.")
@click.option("--auth-token-url", type=URL, help="Access token URL.")
@click.option("--key-set-url", type=URL, help="Public keyset URL.")
@click.option("--auth-audience", type=URL, help="Token audience, if not the token URL.")
@click.option(
    "--deployment-id", "deployment_ids", multiple=True, help="Allowed deployment ID (repeatable)."
)
@click.option("--no-nrps", is_flag=True, help="Do not sync rosters through NRPS.")
@click.option("--no-deep-linking", is_flag=True, help="Refuse deep-linking requests.")
def platform_add(no_nrps: bool, no_deep_linking: bool, issuer: str | None,
                 moodle_site: str | None, **options) -> None:
    """Register a platform and print its id."""
    data = options | {
        "platform_id": issuer,
        "enable_nrps": not no_nrps,
        "enable_deep_linking": not no_deep_linking,
    }
    try:
        if moodle_site:
            data = platforms.fill_from_moodle_site(data, moodle_site)
        platform = platforms.create_platform(data)
    except ValidationError as e:
        raise _bad(e, PLATFORM_OPTIONS) from None
    _commit_or_fail("a platform with this name or issuer and client ID already exists")
    if not platform.deployment_ids:
        click.echo(
            "Warning: no deployment ID given; every launch is refused until one is added.",
            err=True,
        )
    click.echo(platform.id)


@platform_cli.command("list")
def platform_list() -> None:
    """List the registered platforms."""
    rows = [
        (
            p.id,
            p.name,
            p.platform_id,
            p.client_id,
            ",".join(p.deployment_ids) or "-",
            "yes" if p.active else "no",
        )
        for p in platforms.list_platforms()
    ]
    if not rows:
        click.echo("No platforms registered. Add one with 'flask platform add'.")
        return
    click.echo(_table(rows, ("ID", "NAME", "ISSUER", "CLIENT ID", "DEPLOYMENTS", "ACTIVE")))


@platform_cli.command("enable")
@click.argument("name")
def platform_enable(name: str) -> None:
    """Switch platform NAME on: its launches are accepted again."""
    _set_active(name, True)


@platform_cli.command("disable")
@click.argument("name")
def platform_disable(name: str) -> None:
    """Switch platform NAME off: its launches are refused, nothing is deleted."""
    _set_active(name, False)


@platform_cli.command("approve")
@click.argument("name")
def platform_approve(name: str) -> None:
    """Approve platform NAME's dynamic registration, waiting in the inbox: it becomes active."""
    platform = _platform(name)
    if not platform.registration_pending or platform.active:
        raise click.BadParameter(f"{platform.name} is not waiting for approval.",
                                 param_hint="NAME")
    registration.approve(platform)
    inbox.resolve_for(platform)
    db.session.commit()
    click.echo(f"Approved {platform.name}: its launches are accepted now.")


def _platform(name: str, option: str = "NAME"):
    """The platform called `name`, or BadInput naming the argument or option that gave it."""
    try:
        return platforms.get_platform_by_name(name)
    except ValidationError as e:
        raise _bad(e, {"name": option}) from None


def _set_active(name: str, active: bool) -> None:
    platform = _platform(name)
    platforms.set_active(platform, active)
    db.session.commit()
    click.echo(f"{platform.name} is {'active' if active else 'switched off'}.")


@platform_cli.command("unmap-role")
@click.argument("name")
@click.argument("lti_role")
def platform_unmap_role(name: str, lti_role: str) -> None:
    """Delete platform NAME's mapping of LTI_ROLE (URI or short name); its defaults apply again."""
    try:
        platform = platforms.get_platform_by_name(name)
        mapping = role_mappings.find_mapping(platform, lti_role)
    except ValidationError as e:
        raise _bad(e, {"name": "NAME", "lti_role": "LTI_ROLE"}) from None
    role_mappings.delete_mapping(mapping)
    db.session.commit()
    click.echo(f"Deleted {platform.name}'s mapping for {mapping.lti_role}; its defaults apply.")


@platform_cli.command("remove")
@click.argument("name")
def platform_remove(name: str) -> None:
    """Delete platform NAME with its resource links, user and role mappings and launch logs."""
    platform = _platform(name)
    removed = platforms.remove_platform(platform)
    db.session.commit()
    details = ", ".join(f"{count} {label}" for label, count in removed.items())
    click.echo(f"Removed platform {name!r} with {details}.")


keys_cli = AppGroup("keys", help="The tool's signing keys, published at /lti/jwks.")


@keys_cli.command("list")
def keys_list() -> None:
    """List the tool's keys: current, published (previous) and retired."""
    rows = [
        (k.kid, k.status, f"{k.created_at:%Y-%m-%d %H:%M}",
         f"{k.retired_at:%Y-%m-%d %H:%M}" if k.retired_at else "-")
        for k in keys.list_keys()
    ]
    if not rows:
        click.echo("No tool keys yet. Create one with 'flask keys ensure' or 'flask keys rotate'.")
        return
    click.echo(_table(rows, ("KID", "STATUS", "CREATED", "RETIRED")))


@keys_cli.command("ensure")
def keys_ensure() -> None:
    """Create the first key if the tool has none; print the current kid."""
    key = keys.ensure_current_key()
    db.session.commit()
    click.echo(key.kid)


@keys_cli.command("rotate")
def keys_rotate() -> None:
    """Make a new current key; the previous one stays published until retired. Prints the kid."""
    key = keys.rotate_key()
    _commit_or_fail("another rotation ran at the same time; run 'flask keys list' and retry")
    click.echo(key.kid)


@keys_cli.command("retire")
@click.argument("kid")
def keys_retire(kid: str) -> None:
    """Stop publishing key KID and destroy its private half."""
    try:
        keys.retire_key(kid)
    except ValidationError as e:
        raise _bad(e, {"kid": "KID"}) from None
    db.session.commit()
    click.echo(f"Retired {kid}.")


media_cli = AppGroup("media", help="Media files: bulk import, processing again.")


@media_cli.command("add")
@click.argument("path", type=click.Path(dir_okay=False, path_type=str))
@click.option("--title", required=True, help="Title shown to users.")
@click.option("--description", default="", help="Description shown under the player.")
@click.option("--owner", help="Username of the owner.")
@click.option(
    "--visibility",
    type=click.Choice([v.value for v in Visibility]),
    default=Visibility.MEMBERS.value,
    show_default=True,
    help="public: anyone signed in; members: the category's course; private: the owner.",
)
@click.option("--category", help="Category title (made if it does not exist).")
def media_add(path: str, title: str, description: str, owner: str | None, visibility: str,
              category: str | None) -> None:
    """Add the file PATH as a media item; prints the new media id last."""
    owner_user = None
    if owner:
        owner_user = users.get_user_by_username(owner)
        if owner_user is None:
            raise BadInput(f"no user named {owner!r}", param_hint="'--owner'")
    try:
        stream = open(path, "rb")
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror}", param_hint="'PATH'") from None
    root = current_app.config["MEDIA_ROOT"]
    with stream:
        try:
            item = media.add_media(
                stream,
                root=root,
                max_bytes=current_app.config["MAX_UPLOAD_BYTES"],
                title=title,
                original_filename=path,
                description=description,
                owner=owner_user,
                category=media.find_or_create_category(category) if category else None,
                visibility=Visibility(visibility),
            )
        except ValidationError as e:
            raise _bad(e, {"file": "PATH", "title": "--title"}) from None
    job = processing.queue_processing(item)
    media.commit_or_discard(root, item)
    jobs.dispatch(job)
    click.echo(f"Added {item.mime_type} '{item.title}' ({item.size} bytes) as media {item.id}")


@media_cli.command("reprocess")
@click.argument("media_id", metavar="ID", required=False, type=int)
@click.option("--all", "every", is_flag=True, help="Every video and audio item.")
def media_reprocess(media_id: int | None, every: bool) -> None:
    """Queue item ID (or --all video and audio items) for processing again."""
    if (media_id is None) == (not every):
        raise BadInput("give either an item ID or --all")
    if every:
        items = list(db.session.scalars(
            sa.select(Media).where(sa.or_(Media.mime_type.startswith("video/"),
                                          Media.mime_type.startswith("audio/")))
            .order_by(Media.id)))
    else:
        item = db.session.get(Media, media_id)
        if item is None:
            raise BadInput(f"no media item {media_id}", param_hint="'ID'")
        if not media.needs_processing(item.mime_type):
            raise BadInput(f"media {media_id} is {item.mime_type}: only video and audio are "
                           "processed", param_hint="'ID'")
        items = [item]
    queued = processing.reprocess(items)
    db.session.commit()
    jobs.dispatch(*queued)
    click.echo(f"Queued {len(queued)} media item{'s' if len(queued) != 1 else ''} "
               "for processing.")


class DurationType(click.ParamType):
    """A duration like 90d, 12h or 30m."""

    name = "duration"
    UNITS = {"d": "days", "h": "hours", "m": "minutes"}

    def convert(self, value, param, ctx):
        if isinstance(value, timedelta):
            return value
        match = re.fullmatch(r"(\d+)([dhm])", str(value).strip())
        if not match:
            raise BadInput(f"{value!r} is not a duration like 90d, 12h or 30m",
                           ctx=ctx, param=param)
        return timedelta(**{self.UNITS[match.group(2)]: int(match.group(1))})

    @classmethod
    def describe(cls, duration: timedelta) -> str:
        """The duration in the units it is written in: "1 day", "12 hours", "1 day 6 hours"."""
        minutes = int(duration.total_seconds()) // 60
        amounts = zip(cls.UNITS.values(), (minutes // 1440, minutes % 1440 // 60, minutes % 60),
                      strict=True)
        words = [f"{n} {unit if n != 1 else unit[:-1]}" for unit, n in amounts if n]
        return " ".join(words) or "0 minutes"


audit_cli = AppGroup("audit", help="The launch log.")


@audit_cli.command("prune")
@click.option("--older-than", type=DurationType(),
              help="Age beyond which entries go, like 90d, 12h or 30m "
                   "(default: the AUDIT_RETENTION_DAYS setting).")
def audit_prune(older_than: timedelta | None) -> None:
    """Delete launch log entries older than a duration, in batches; prints how many."""
    if older_than is None:
        older_than = timedelta(days=current_app.config["AUDIT_RETENTION_DAYS"])
    removed = audit.prune(older_than)
    click.echo(f"Removed {removed} launch log entries older than "
               f"{DurationType.describe(older_than)}.")


jobs_cli = AppGroup("jobs", help="Background jobs: media processing, roster syncs, upkeep.")


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


@jobs_cli.command("status")
def jobs_status() -> None:
    """Jobs waiting and running per queue, and those failed in the last day (with why)."""
    click.echo(_table(
        [(f.queue, f.waiting, f.running, f.failed_recently, f.done_recently)
         for f in jobs.queue_figures()],
        ("Queue", "Waiting", "Running", "Failed (last day)", "Done (last day)")))
    running = jobs.running_jobs()
    click.echo("\nRunning:")
    click.echo(_table(
        [(j.id, j.kind, j.subject or "", f"{j.progress}%", j.worker, _when(j.heartbeat_at))
         for j in running], ("ID", "Kind", "Subject", "Progress", "Worker", "Heartbeat (UTC)"))
        if running else "  nothing")
    failed = jobs.recent_failures()
    click.echo("\nFailed in the last day:")
    click.echo(_table(
        [(j.id, j.kind, j.subject or "", _when(j.finished_at), j.error.splitlines()[0][:100])
         for j in failed], ("ID", "Kind", "Subject", "Failed (UTC)", "Reason"))
        if failed else "  nothing")


@jobs_cli.command("retry")
@click.argument("job_id", metavar="ID", type=int)
def jobs_retry(job_id: int) -> None:
    """Run failed job ID again."""
    job = db.session.get(Job, job_id)
    if job is None or job.state is not JobState.FAILED:
        raise BadInput(f"no failed job {job_id}", param_hint="'ID'")
    again = jobs.retry(job)
    if again is None:
        raise BadInput(f"the work of job {job_id} is gone (its item was deleted)")
    db.session.commit()
    jobs.dispatch(again)
    click.echo(f"Queued job {again.id} ({again.kind} {again.subject or ''}).")


@jobs_cli.command("sweep")
def jobs_sweep() -> None:
    """Put back jobs of stopped workers and resend jobs no worker received (the scheduler does
    this every minute)."""
    done = jobs.sweep()
    click.echo(f"Put back {done['requeued']}, failed {done['failed']}, "
               f"sent again {done['resent']}.")


nrps_cli = AppGroup("nrps", help="Course rosters from the platforms (Names and Roles).")


def _nrps_courses(platform_name: str | None, context_id: str | None) -> list:
    """The courses to sync: BadInput (one line, exit 2) for an unknown platform or context."""
    if platform_name is not None:
        platform = _platform(platform_name, "--platform")
        if not platform.enable_nrps:
            raise BadInput(f"roster sync (Names and Roles) is switched off for {platform.name!r}",
                           param_hint="'--platform'")
        chosen = [platform]
    else:
        chosen = list(nrps_jobs.nrps_platforms())
    groups = [g for p in chosen for g in nrps_jobs.syncable_groups(p, context_id)]
    if context_id is not None and not groups:
        where = f"of {chosen[0].name!r}" if platform_name else "of a platform with NRPS on"
        raise BadInput(f"no course {where} has context ID {context_id!r} (a course is known "
                       "after its first launch)", param_hint="'--context'")
    return groups


def _course_label(group) -> str:
    return f"{group.name}, context {group.lti_context_id}"


@nrps_cli.command("sync")
@click.option("--platform", "platform_name", metavar="NAME",
              help="Only this platform's courses (default: every platform with NRPS on).")
@click.option("--context", "context_id", metavar="ID",
              help="Only the course with this LTI context ID (default: every course with a "
                   "roster address).")
@click.option("--dry-run", is_flag=True, help="Read the rosters and say what would change.")
def nrps_sync(platform_name: str | None, context_id: str | None, dry_run: bool) -> None:
    """Sync course rosters into their course groups; one summary line per course."""
    groups = _nrps_courses(platform_name, context_id)
    if not groups:
        click.echo("No course has a roster address yet: a launch from the course with Names "
                   "and Roles on brings it.")
        return
    lines, failed = [], False
    with click.progressbar(groups, label="Syncing rosters", file=sys.stderr,
                           hidden=not sys.stderr.isatty()) as bar:
        for group in bar:
            label = _course_label(group)
            if dry_run:
                plan = nrps.plan_sync(group)
                db.session.commit()  # the platform's last answer
                failed |= bool(plan.error)
                lines.append(f"Failed ({label}): {plan.error}" if plan.error
                             else f"{plan.summary()} ({label})")
                continue
            try:
                record = nrps.sync(group, trigger="command")
            except nrps.SyncRefused as e:
                failed = True
                lines.append(f"Not synced ({label}): {e.reason}")
                continue
            if record.error:
                failed = True
                lines.append(f"Failed ({label}): {record.error}")
            else:
                summary = nrps.summary_line(record.members, record.added, record.updated,
                                            record.removed, record.skipped)
                lines.append(f"{summary} ({label})")
    for line in lines:
        click.echo(line)
    if failed:
        sys.exit(1)


def init_app(app: Flask) -> None:
    app.cli.add_command(create_admin_command)
    app.cli.add_command(set_password_command)
    app.cli.add_command(platform_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(media_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(jobs_cli)
    app.cli.add_command(nrps_cli)
