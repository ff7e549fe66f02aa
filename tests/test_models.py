"""The schema's rules: every unique constraint and delete rule, checked on the real database."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from lti_tool.models import (
    Category,
    GlobalRole,
    GroupRole,
    LaunchType,
    LTILaunchLog,
    LTIPlatform,
    LTIResourceLink,
    LTIRoleMapping,
    LTIUserMapping,
    Media,
    RBACGroup,
    RBACMembership,
    User,
    Visibility,
)


@pytest.fixture
def course(db, make_platform, make_user):
    """A platform with one course: category, group, a teacher with media, a link, logs."""
    platform = make_platform()
    teacher = make_user("teacher")
    category = Category(title="Biology 101", is_lms_course=True, platform_id=platform.id,
                        lti_context_id="course-1")
    group = RBACGroup(name="Biology 101", platform_id=platform.id, lti_context_id="course-1",
                      categories=[category])
    media = Media(title="Cells", file_path="ab/cd.mp4", mime_type="video/mp4", size=10,
                  owner=teacher, category=category)
    db.session.add_all([category, group, media])
    db.session.flush()
    membership = RBACMembership(group=group, user=teacher, role=GroupRole.MANAGER)
    link = LTIResourceLink(platform_id=platform.id, context_id="course-1",
                           resource_link_id="link-1", category=category, media=media,
                           rbac_group=group)
    mapping = LTIUserMapping(platform_id=platform.id, lti_user_id="sub-1", user=teacher)
    role = LTIRoleMapping(platform_id=platform.id, lti_role="Instructor",
                          global_role=GlobalRole.EDITOR, group_role=GroupRole.MANAGER)
    db.session.add_all([membership, link, mapping, role])
    db.session.flush()
    log = LTILaunchLog(platform_id=platform.id, user_id=teacher.id, resource_link_id=link.id,
                       success=True, claims={"sub": "sub-1"}, ip_address="203.0.113.7")
    db.session.add(log)
    db.session.commit()
    return {"platform": platform, "teacher": teacher, "category": category, "group": group,
            "media": media, "membership": membership, "link": link, "mapping": mapping,
            "role": role, "log": log}


def _count(db, model, *where) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _delete(db, obj) -> None:
    db.session.delete(obj)
    db.session.commit()
    db.session.expire_all()


def _insert_fails(db, obj) -> None:
    db.session.add(obj)
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


# Unique rules


def test_platform_name_is_unique(db, make_platform):
    make_platform(name="Moodle")
    _insert_fails(db, LTIPlatform(name="Moodle", platform_id="https://other.example.edu",
                                  client_id="x", auth_login_url="https://o/a",
                                  auth_token_url="https://o/t", key_set_url="https://o/k"))


def test_issuer_and_client_id_are_unique_together(db, make_platform):
    first = make_platform(site="https://lms.example.edu", client_id="abc")
    # the same issuer with another client ID is a second registration, and allowed
    make_platform(site="https://lms.example.edu", client_id="def")
    _insert_fails(db, LTIPlatform(name="Copy", platform_id=first.platform_id, client_id="abc",
                                  auth_login_url="https://o/a", auth_token_url="https://o/t",
                                  key_set_url="https://o/k"))


def test_resource_link_is_unique_per_platform_and_context(db, course, make_platform):
    platform = course["platform"]
    db.session.add(LTIResourceLink(platform_id=platform.id, context_id="course-2",
                                   resource_link_id="link-1"))
    db.session.add(LTIResourceLink(platform_id=make_platform().id, context_id="course-1",
                                   resource_link_id="link-1"))
    db.session.commit()
    _insert_fails(db, LTIResourceLink(platform_id=platform.id, context_id="course-1",
                                      resource_link_id="link-1"))


def test_resource_links_without_a_context_are_unique_too(db, make_platform):
    platform = make_platform()
    db.session.add(LTIResourceLink(platform_id=platform.id, resource_link_id="link-1"))
    db.session.commit()
    _insert_fails(db, LTIResourceLink(platform_id=platform.id, resource_link_id="link-1"))


def test_user_mapping_is_unique_per_platform_and_sub(db, course, make_user, make_platform):
    other_platform = make_platform()
    db.session.add(LTIUserMapping(platform_id=other_platform.id, lti_user_id="sub-1",
                                  user=make_user()))
    db.session.commit()
    _insert_fails(db, LTIUserMapping(platform_id=course["platform"].id, lti_user_id="sub-1",
                                     user=make_user()))


def test_role_mapping_is_unique_per_platform_and_role(db, course):
    _insert_fails(db, LTIRoleMapping(platform_id=course["platform"].id, lti_role="Instructor",
                                     group_role=GroupRole.MEMBER))


def test_username_is_unique(db, make_user):
    make_user("alice")
    _insert_fails(db, User(username="alice"))


def test_membership_is_unique_per_group_and_user(db, course):
    _insert_fails(db, RBACMembership(rbac_group_id=course["group"].id,
                                     user_id=course["teacher"].id, role=GroupRole.MEMBER))


def test_course_category_and_group_are_unique_per_platform_and_context(db, course):
    platform_id = course["platform"].id
    _insert_fails(db, Category(title="Again", platform_id=platform_id, lti_context_id="course-1"))
    _insert_fails(db, RBACGroup(name="Again", platform_id=platform_id, lti_context_id="course-1"))


def test_topic_categories_may_share_titles(db):
    db.session.add_all([Category(title="Chemistry"), Category(title="Chemistry")])
    db.session.commit()
    assert _count(db, Category, Category.title == "Chemistry") == 2


@pytest.mark.parametrize(
    "table, column, value",
    [
        ("user_account", "global_role", "superuser"),
        ("rbac_membership", "role", "owner"),
        ("media", "visibility", "everyone"),
        ("lti_launch_log", "launch_type", "submission_review"),
    ],
)
def test_the_database_refuses_values_outside_a_choice(db, course, table, column, value):
    """CHECK constraints hold even for writers that bypass the ORM (SQL, other tools)."""
    with pytest.raises(IntegrityError):
        db.session.execute(sa.text(f"UPDATE {table} SET {column} = :value"), {"value": value})
        db.session.flush()
    db.session.rollback()


# Delete rules


def test_deleting_a_platform_deletes_its_links_mappings_and_logs(db, course):
    platform, teacher = course["platform"], course["teacher"]
    _delete(db, platform)
    for model in (LTIResourceLink, LTIUserMapping, LTIRoleMapping, LTILaunchLog):
        assert _count(db, model) == 0, model
    # what the tool owns stays: the course's media, category, group and the user
    assert db.session.get(User, teacher.id) is not None
    assert _count(db, Media) == 1
    category = db.session.get(Category, course["category"].id)
    group = db.session.get(RBACGroup, course["group"].id)
    assert category.platform_id is None and group.platform_id is None


def test_deleting_a_category_clears_it_from_links_and_media(db, course):
    _delete(db, course["category"])
    assert db.session.get(LTIResourceLink, course["link"].id).category_id is None
    assert db.session.get(Media, course["media"].id).category_id is None
    assert db.session.get(RBACGroup, course["group"].id).categories == []


def test_deleting_media_clears_it_from_resource_links(db, course):
    _delete(db, course["media"])
    link = db.session.get(LTIResourceLink, course["link"].id)
    assert link is not None and link.media_id is None


def test_deleting_a_group_clears_links_and_removes_memberships(db, course):
    _delete(db, course["group"])
    assert db.session.get(LTIResourceLink, course["link"].id).rbac_group_id is None
    assert _count(db, RBACMembership) == 0
    assert db.session.get(Category, course["category"].id) is not None


def test_deleting_a_user_deletes_mappings_memberships_and_logs_keeps_media(db, course):
    _delete(db, course["teacher"])
    assert _count(db, LTIUserMapping) == 0
    assert _count(db, RBACMembership) == 0
    assert _count(db, LTILaunchLog) == 0
    media = db.session.get(Media, course["media"].id)
    assert media is not None and media.owner_id is None


def test_deleting_a_resource_link_keeps_its_launch_logs(db, course):
    _delete(db, course["link"])
    log = db.session.get(LTILaunchLog, course["log"].id)
    assert log is not None and log.resource_link_id is None


def test_failed_launch_is_logged_without_a_user(db, make_platform):
    platform = make_platform()
    db.session.add(LTILaunchLog(platform_id=platform.id, success=False,
                                launch_type=LaunchType.DEEP_LINKING,
                                error_category="unknown_deployment",
                                error_message="Deployment 7 is not registered"))
    db.session.commit()
    log = db.session.scalar(sa.select(LTILaunchLog))
    assert log.user_id is None and log.launch_type is LaunchType.DEEP_LINKING


# Defaults and helpers


def test_defaults_follow_the_design(db, make_platform, make_user):
    platform = make_platform()
    assert (platform.enable_nrps, platform.enable_deep_linking, platform.auto_create_categories,
            platform.auto_create_users, platform.auto_sync_roles, platform.active) == (
        True, True, True, True, True, True)
    assert platform.remove_from_groups_on_unenroll is False
    assert platform.key_set is None and platform.key_set_updated is None
    user = make_user()
    assert user.global_role is GlobalRole.USER and user.active
    link = LTIResourceLink(platform_id=platform.id, resource_link_id="l")
    media = Media(title="m", file_path="x", mime_type="image/png", size=1)
    db.session.add_all([link, media])
    db.session.commit()
    assert link.launch_count == 0 and link.last_launch is None and link.context_id == ""
    assert media.visibility is Visibility.MEMBERS


def test_timestamps_are_taken_when_the_row_is_made_and_read_back_in_utc(db, make_platform):
    before = datetime.now(UTC)
    first = make_platform()
    second = make_platform()
    db.session.expire_all()
    assert first.created_at <= second.created_at
    assert first.created_at.utcoffset() == timedelta(0)
    assert timedelta(0) <= first.created_at - before < timedelta(seconds=5)


def test_timestamps_given_in_another_zone_are_stored_as_the_same_instant(db, make_platform):
    platform = make_platform()
    plus_two = timezone(timedelta(hours=2))
    platform.key_set_updated = datetime(2026, 11, 25, 12, 0, tzinfo=plus_two)
    db.session.commit()
    db.session.expire_all()
    assert platform.key_set_updated == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def test_launch_logs_list_newest_first(db, make_platform):
    platform = make_platform()
    now = datetime.now(UTC)
    for minutes in (5, 1, 3):
        db.session.add(LTILaunchLog(platform_id=platform.id, success=True,
                                    created_at=now - timedelta(minutes=minutes)))
    db.session.commit()
    logs = db.session.scalars(platform.launch_logs.select()).all()
    ages = [round((now - log.created_at).total_seconds() / 60) for log in logs]
    assert ages == [1, 3, 5]


def test_models_read_well(course):
    platform = course["platform"]
    assert str(platform) == f"{platform.name} ({platform.platform_id})"
    assert repr(course["teacher"]) == f"<User {course['teacher'].id} 'teacher' user>"
    assert str(course["role"]) == "Instructor -> editor/manager"
    assert "ok" in repr(course["log"])
    assert str(course["membership"]) == "teacher in Biology 101 as manager"


def test_global_roles_include_the_lower_ones(make_user):
    editor = make_user(global_role=GlobalRole.EDITOR)
    assert editor.has_global_role(GlobalRole.ADVANCED_USER)
    assert not editor.has_global_role(GlobalRole.MANAGER)


def test_passwords_are_hashed(make_user):
    user = make_user(password="correct horse")
    assert "correct horse" not in user.password_hash
    assert user.check_password("correct horse") and not user.check_password("wrong")
    assert not make_user().check_password("")
