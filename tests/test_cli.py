"""Operator commands, as `flask --app wsgi ...` runs them: output, exit codes, bad input."""

import pytest
import sqlalchemy as sa

from lti_tool.models import GlobalRole, LTIPlatform, LTIResourceLink, LTIUserMapping, User

MOODLE = "https://lms.example.edu/moodle"


def platform_args(**overrides) -> list[str]:
    values = {
        "--name": "Moodle Production",
        "--issuer": MOODLE,
        "--client-id": "tool-abc",
        "--auth-login-url": f"{MOODLE}/mod/lti/auth.php",
        "--auth-token-url": f"{MOODLE}/mod/lti/token.php",
        "--key-set-url": f"{MOODLE}/mod/lti/certs.php",
    } | overrides
    args = ["platform", "add"]
    for option, value in values.items():
        if value is not None:
            args += [option, value]
    return args


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


# create-admin


def test_create_admin_with_password_option(runner, db):
    result = runner.invoke(args=["create-admin", "alice", "--password", "s3cret-pass"])
    assert result.exit_code == 0, result.output
    user = db.session.scalar(sa.select(User).where(User.username == "alice"))
    assert user.global_role is GlobalRole.ADMIN and user.active
    assert user.check_password("s3cret-pass")
    assert "s3cret-pass" not in user.password_hash


def test_create_admin_reads_admin_password_from_the_environment(runner, db):
    result = runner.invoke(args=["create-admin", "bob"], env={"ADMIN_PASSWORD": "from-env-123"})
    assert result.exit_code == 0, result.output
    user = db.session.scalar(sa.select(User).where(User.username == "bob"))
    assert user.check_password("from-env-123")


def test_create_admin_prompts_for_a_password(runner, db):
    result = runner.invoke(args=["create-admin", "carol"], input="typed-pass-1\ntyped-pass-1\n")
    assert result.exit_code == 0, result.output
    assert "typed-pass-1" not in result.output
    user = db.session.scalar(sa.select(User).where(User.username == "carol"))
    assert user.check_password("typed-pass-1")


def test_create_admin_can_generate_a_password_and_shows_it_once(runner, db):
    result = runner.invoke(args=["create-admin", "dave", "--generate-password"])
    assert result.exit_code == 0, result.output
    password = result.stdout.strip().split()[-1]
    user = db.session.scalar(sa.select(User).where(User.username == "dave"))
    assert user.check_password(password)


def test_create_admin_if_missing_leaves_an_existing_user_alone(runner, db, make_user):
    make_user("erin", password="original-pw")
    result = runner.invoke(
        args=["create-admin", "erin", "--if-missing", "--generate-password"]
    )
    assert result.exit_code == 0, result.output
    assert "already exists" in result.output
    user = db.session.scalar(sa.select(User).where(User.username == "erin"))
    assert user.check_password("original-pw")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["create-admin", "frank", "--password", "short"], "at least 8 characters"),
        (["create-admin", "bad name", "--password", "long-enough"], "letters, digits"),
        (["create-admin", "taken", "--password", "long-enough"], "already exists"),
    ],
)
def test_create_admin_refuses_bad_input(runner, db, make_user, args, fragment):
    make_user("taken", password="whatever1")
    result = runner.invoke(args=args)
    assert_one_line_error(result, fragment)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


# platform add


def test_platform_add_prints_the_new_id_and_stores_every_value(runner, db):
    result = runner.invoke(
        args=platform_args(
            **{"--auth-audience": f"{MOODLE}/mod/lti/token.php"}
        ) + ["--deployment-id", "3", "--deployment-id", "7"]
    )
    assert result.exit_code == 0, result.output
    platform_id = int(result.stdout.strip())
    platform = db.session.get(LTIPlatform, platform_id)
    assert platform.name == "Moodle Production"
    assert platform.platform_id == MOODLE
    assert platform.client_id == "tool-abc"
    assert platform.auth_login_url == f"{MOODLE}/mod/lti/auth.php"
    assert platform.auth_token_url == f"{MOODLE}/mod/lti/token.php"
    assert platform.key_set_url == f"{MOODLE}/mod/lti/certs.php"
    assert platform.auth_audience == f"{MOODLE}/mod/lti/token.php"
    assert platform.deployment_ids == ["3", "7"]
    assert platform.enable_nrps and platform.enable_deep_linking and platform.active


def test_platform_add_switches_off_nrps_and_deep_linking(runner, db):
    result = runner.invoke(
        args=platform_args() + ["--deployment-id", "1", "--no-nrps", "--no-deep-linking"]
    )
    assert result.exit_code == 0, result.output
    platform = db.session.get(LTIPlatform, int(result.stdout))
    assert not platform.enable_nrps and not platform.enable_deep_linking


def test_platform_add_warns_when_no_deployment_is_allowed(runner):
    result = runner.invoke(args=platform_args())
    assert result.exit_code == 0
    assert "no deployment ID" in result.stderr


@pytest.mark.parametrize(
    "host", ["http://localhost:8000", "http://127.0.0.1:8081/moodle", "http://[::1]:9000"]
)
def test_platform_add_accepts_plain_http_on_loopback(runner, db, host):
    result = runner.invoke(
        args=platform_args(
            **{
                "--issuer": host,
                "--auth-login-url": f"{host}/mod/lti/auth.php",
                "--auth-token-url": f"{host}/mod/lti/token.php",
                "--key-set-url": f"{host}/mod/lti/certs.php",
            }
        )
    )
    assert result.exit_code == 0, result.output
    assert db.session.get(LTIPlatform, int(result.stdout)).platform_id == host


@pytest.mark.parametrize(
    "option, value, fragment",
    [
        ("--issuer", "lms.example.edu", "not an absolute"),
        ("--issuer", "http://lms.example.edu", "must use https"),
        ("--issuer", "ftp://lms.example.edu", "not an absolute"),
        ("--issuer", "https://lms.example.edu/moodle?x=1", "no query string"),
        ("--issuer", "https://", "not an absolute"),
        ("--auth-login-url", "not a url", "contains spaces"),
        ("--auth-token-url", "https://lms.example.edu:99999/token", "not a valid URL"),
        ("--key-set-url", "http://10.0.0.5/certs.php", "must use https"),
        ("--auth-audience", "javascript:alert(1)", "not an absolute"),
        ("--name", "  ", "required"),
        ("--client-id", "", "required"),
    ],
)
def test_platform_add_refuses_bad_values(runner, db, option, value, fragment):
    result = runner.invoke(args=platform_args(**{option: value}))
    assert_one_line_error(result, option, fragment)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LTIPlatform)) == 0


def test_platform_add_refuses_a_duplicate_name(runner):
    assert runner.invoke(args=platform_args()).exit_code == 0
    result = runner.invoke(args=platform_args(**{"--client-id": "other"}))
    assert_one_line_error(result, "--name", "already exists")


def test_platform_add_refuses_a_duplicate_issuer_and_client_id(runner):
    assert runner.invoke(args=platform_args()).exit_code == 0
    result = runner.invoke(args=platform_args(**{"--name": "Second name"}))
    assert_one_line_error(result, "--client-id", "already has a platform")


def test_one_issuer_may_have_several_client_ids(runner, db):
    assert runner.invoke(args=platform_args()).exit_code == 0
    result = runner.invoke(args=platform_args(**{"--name": "Moodle 2", "--client-id": "tool-2"}))
    assert result.exit_code == 0, result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LTIPlatform)) == 2


def test_platform_add_without_a_required_option_fails_with_usage_error(runner):
    result = runner.invoke(args=platform_args(**{"--key-set-url": None}))
    assert result.exit_code == 2
    assert "--key-set-url" in result.stderr


# platform list / remove


def test_platform_list_when_empty_says_how_to_add_one(runner):
    result = runner.invoke(args=["platform", "list"])
    assert result.exit_code == 0
    assert "No platforms registered" in result.output


def test_platform_list_shows_each_platform(runner, make_platform):
    make_platform(name="Moodle A", site="https://a.example.edu", deployment_ids=["1", "2"])
    make_platform(name="Canvas B", site="https://canvas.instructure.com", active=False)
    result = runner.invoke(args=["platform", "list"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert lines[0].split()[:3] == ["ID", "NAME", "ISSUER"]
    assert "Canvas B" in lines[1] and "no" in lines[1].split()
    assert "Moodle A" in lines[2] and "https://a.example.edu" in lines[2] and "1,2" in lines[2]


def test_platform_remove_deletes_it_with_what_belongs_to_it(runner, db, make_platform, make_user):
    platform = make_platform(name="Old Moodle")
    keep = make_platform(name="Other")
    db.session.add_all([
        LTIResourceLink(platform_id=platform.id, resource_link_id="l1"),
        LTIResourceLink(platform_id=platform.id, resource_link_id="l2"),
        LTIUserMapping(platform_id=platform.id, lti_user_id="s1", user=make_user()),
    ])
    db.session.commit()
    result = runner.invoke(args=["platform", "remove", "Old Moodle"])
    assert result.exit_code == 0, result.output
    assert "2 resource links" in result.output and "1 user mappings" in result.output
    db.session.expire_all()
    assert db.session.scalars(sa.select(LTIPlatform.name)).all() == [keep.name]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LTIResourceLink)) == 0


def test_platform_remove_of_an_unknown_name_fails(runner, make_platform):
    make_platform(name="Moodle")
    result = runner.invoke(args=["platform", "remove", "Mood"])
    assert_one_line_error(result, "no platform named 'Mood'")



# the admin's actions, from the command line too


def test_platform_add_fills_the_urls_from_a_moodle_site(runner, db):
    result = runner.invoke(args=platform_args(**{
        "--moodle-site": MOODLE + "/", "--issuer": None, "--auth-login-url": None,
        "--auth-token-url": None, "--key-set-url": None}))
    assert result.exit_code == 0, result.output
    platform = db.session.get(LTIPlatform, int(result.stdout.strip()))
    assert platform.platform_id == MOODLE
    assert platform.key_set_url == f"{MOODLE}/mod/lti/certs.php"
    assert platform.auth_login_url == f"{MOODLE}/mod/lti/auth.php"


def test_platform_add_refuses_a_bad_moodle_site(runner):
    result = runner.invoke(args=platform_args(**{"--moodle-site": "ftp://x", "--issuer": None}))
    assert result.exit_code == 2 and "--moodle-site" in result.stderr


def test_platform_disable_and_enable(runner, db, lms, browser):
    name = lms.platform.name
    result = runner.invoke(args=["platform", "disable", name])
    assert result.exit_code == 0 and "switched off" in result.output
    db.session.expire_all()
    assert not db.session.get(LTIPlatform, lms.platform.id).active
    assert lms.login(browser).response.status_code == 403, "a switched-off platform is refused"
    assert runner.invoke(args=["platform", "enable", name]).exit_code == 0
    db.session.expire_all()
    assert db.session.get(LTIPlatform, lms.platform.id).active
    assert lms.launch(browser).status_code in (200, 302, 303)
    assert runner.invoke(args=["platform", "disable", "No such LMS"]).exit_code == 2


def test_platform_unmap_role_takes_the_role_as_uri_or_short_name(runner, db, make_platform):
    from lti_tool.models import LTIRoleMapping

    platform = make_platform(name="Moodle")
    db.session.add(LTIRoleMapping(
        platform_id=platform.id, global_role=GlobalRole.EDITOR,
        lti_role="http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"))
    db.session.commit()
    assert runner.invoke(args=["platform", "unmap-role", "Moodle", "Learner"]).exit_code == 2
    result = runner.invoke(args=["platform", "unmap-role", "Moodle", "Instructor"])
    assert result.exit_code == 0, result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LTIRoleMapping)) == 0
