"""What a successful launch creates and updates: user, roles, course space, resource link, log."""

import json

import pytest
import sqlalchemy as sa

from lti_tool.models import (
    Category,
    GlobalRole,
    GroupRole,
    LTILaunchLog,
    LTIResourceLink,
    LTIRoleMapping,
    LTIUserMapping,
    Media,
    RBACGroup,
    RBACMembership,
    User,
    Visibility,
    rbac_group_category,
)

from .lms import DROP, INSTITUTION_ADMIN, INSTRUCTOR, LEARNER, SYSTEM_ADMIN

LIS = "http://purl.imsglobal.org/vocab/lis/v2/"


def one(db, model):
    db.session.expire_all()
    rows = db.session.scalars(sa.select(model)).all()
    assert len(rows) == 1, rows
    return rows[0]


def count(db, model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def membership_role(db, user: User) -> GroupRole:
    return db.session.scalar(
        sa.select(RBACMembership.role).where(RBACMembership.user_id == user.id)
    )


# Users


def test_first_launch_creates_user_and_mapping_and_signs_in(browser, lms, db):
    response = lms.launch(browser)
    assert response.status_code == 200
    user = one(db, User)
    assert user.username == "ghopper"
    assert user.name == "Grace Hopper" and user.email == "g.hopper@example.edu"
    assert user.password_hash is None
    mapping = one(db, LTIUserMapping)
    assert (mapping.lti_user_id, mapping.user_id) == ("318", user.id)
    assert (mapping.given_name, mapping.family_name) == ("Grace", "Hopper")
    assert mapping.last_login is not None
    with browser.session_transaction() as session:
        assert session["_user_id"] == str(user.id)


def test_returning_user_is_found_and_cached_details_refreshed(browser, lms, db):
    lms.launch(browser)
    lms.launch(browser, email="grace@navy.example.mil", name="Rear Admiral Hopper")
    user = one(db, User)
    mapping = one(db, LTIUserMapping)
    assert mapping.email == "grace@navy.example.mil"
    assert mapping.name == "Rear Admiral Hopper"
    assert user.email == "grace@navy.example.mil"
    assert count(db, LTILaunchLog) == 2


def test_usernames_stay_unique_and_readable(browser, lms, db, make_user):
    make_user("ghopper")
    lms.launch(browser)
    lms.launch(browser, sub="319")
    names = set(db.session.scalars(sa.select(User.username)))
    assert names == {"ghopper", "ghopper-2", "ghopper-3"}


@pytest.mark.parametrize(
    "overrides, username",
    [
        ({"ext": DROP}, "g.hopper"),
        ({"ext": DROP, "email": DROP}, "grace.hopper"),
        ({"ext": DROP, "email": DROP, "given_name": DROP, "family_name": DROP, "name": DROP},
         "lti1-318"),
    ],
)
def test_username_falls_back_on_what_the_platform_shares(browser, lms, db, overrides, username):
    lms.launch(browser, **overrides)
    assert one(db, User).username == username.replace("lti1", f"lti{lms.platform.id}")


def test_a_launch_signs_in_the_launching_user_not_the_previous_one(browser, lms, db):
    lms.launch(browser, sub="1", ext={"user_username": "alice"})
    lms.launch(browser, sub="2", ext={"user_username": "bob"})
    bob = db.session.scalar(sa.select(User).where(User.username == "bob"))
    with browser.session_transaction() as session:
        assert session["_user_id"] == str(bob.id)


# Roles


@pytest.mark.parametrize(
    "roles, global_role, group_role",
    [
        ([INSTRUCTOR], GlobalRole.ADVANCED_USER, GroupRole.MANAGER),
        (["Instructor"], GlobalRole.ADVANCED_USER, GroupRole.MANAGER),
        ([f"{LIS}institution/person#Faculty"], GlobalRole.ADVANCED_USER, GroupRole.MANAGER),
        ([f"{LIS}membership#TeachingAssistant"], GlobalRole.USER, GroupRole.CONTRIBUTOR),
        ([f"{LIS}membership/Instructor#TeachingAssistant"], GlobalRole.USER,
         GroupRole.CONTRIBUTOR),
        (["urn:lti:role:ims/lis/TeachingAssistant"], GlobalRole.USER, GroupRole.CONTRIBUTOR),
        ([f"{LIS}membership#ContentDeveloper"], GlobalRole.USER, GroupRole.CONTRIBUTOR),
        ([LEARNER], GlobalRole.USER, GroupRole.MEMBER),
        (["Learner"], GlobalRole.USER, GroupRole.MEMBER),
        ([f"{LIS}institution/person#Student"], GlobalRole.USER, GroupRole.MEMBER),
        ([f"{LIS}membership#Mentor"], GlobalRole.USER, GroupRole.MEMBER),
        ([f"{LIS}unknown/unknown#Helper"], GlobalRole.USER, GroupRole.MEMBER),
        ([], GlobalRole.USER, GroupRole.MEMBER),
        ([SYSTEM_ADMIN], GlobalRole.MANAGER, GroupRole.MANAGER),
        ([INSTITUTION_ADMIN], GlobalRole.MANAGER, GroupRole.MANAGER),
        (["urn:lti:instrole:ims/lis/Administrator"], GlobalRole.MANAGER, GroupRole.MANAGER),
        ([f"{LIS}person#Administrator"], GlobalRole.MANAGER, GroupRole.MANAGER),
        ([f"{LIS}membership#Administrator"], GlobalRole.USER, GroupRole.MANAGER),
        ([LEARNER, f"{LIS}membership#TeachingAssistant"], GlobalRole.USER,
         GroupRole.CONTRIBUTOR),
        ([INSTRUCTOR, SYSTEM_ADMIN, INSTITUTION_ADMIN], GlobalRole.MANAGER, GroupRole.MANAGER),
    ],
)
def test_default_role_table(browser, lms, db, roles, global_role, group_role):
    assert lms.launch(browser, roles=roles).status_code == 200
    user = one(db, User)
    assert user.global_role is global_role
    assert membership_role(db, user) is group_role


@pytest.mark.parametrize(
    "mapping_role, launch_role",
    [("Learner", LEARNER), (LEARNER, "Learner"), (LEARNER, LEARNER)],
    ids=["short-maps-uri", "uri-maps-short", "same-form"],
)
def test_role_mappings_override_defaults_either_way_written(
    browser, lms, db, mapping_role, launch_role
):
    db.session.add(LTIRoleMapping(platform_id=lms.platform.id, lti_role=mapping_role,
                                  global_role=GlobalRole.EDITOR,
                                  group_role=GroupRole.CONTRIBUTOR))
    db.session.commit()
    lms.launch(browser, roles=[launch_role])
    user = one(db, User)
    assert user.global_role is GlobalRole.EDITOR
    assert membership_role(db, user) is GroupRole.CONTRIBUTOR


def test_an_empty_mapping_value_adds_nothing(browser, lms, db):
    db.session.add(LTIRoleMapping(platform_id=lms.platform.id, lti_role="Instructor",
                                  global_role=None, group_role=GroupRole.CONTRIBUTOR))
    db.session.commit()
    lms.launch(browser, roles=[INSTRUCTOR])
    user = one(db, User)
    assert user.global_role is GlobalRole.USER
    assert membership_role(db, user) is GroupRole.CONTRIBUTOR


def test_with_role_sync_the_group_role_follows_the_lms_and_global_only_rises(browser, lms, db):
    lms.launch(browser, roles=[INSTRUCTOR])
    lms.launch(browser, roles=[LEARNER])
    user = one(db, User)
    assert membership_role(db, user) is GroupRole.MEMBER
    assert user.global_role is GlobalRole.ADVANCED_USER, "never lowered by a launch"
    lms.launch(browser, roles=[SYSTEM_ADMIN])
    assert one(db, User).global_role is GlobalRole.MANAGER


def test_a_launch_never_strips_rights_given_by_hand(browser, lms, db):
    lms.launch(browser, roles=[LEARNER])
    user = one(db, User)
    user.global_role = GlobalRole.ADMIN
    db.session.commit()
    lms.launch(browser, roles=[LEARNER])
    assert one(db, User).global_role is GlobalRole.ADMIN


def test_without_role_sync_roles_are_set_only_on_creation(browser, lms, db):
    lms.platform.auto_sync_roles = False
    db.session.commit()
    lms.launch(browser, roles=[LEARNER])
    lms.launch(browser, roles=[INSTRUCTOR])
    user = one(db, User)
    assert user.global_role is GlobalRole.USER
    assert membership_role(db, user) is GroupRole.MEMBER


# Courses and resource links


def test_course_gets_a_category_and_group_and_the_user_joins(browser, lms, db):
    response = lms.launch(browser)
    category, group = one(db, Category), one(db, RBACGroup)
    assert (category.title, category.lti_context_id, category.is_lms_course) == (
        "Modern History", "24", True)
    assert category.platform_id == lms.platform.id
    assert group.name == "Modern History" and group.categories == [category]
    assert response.headers["Content-Location"].endswith(f"/media/category/{category.id}")
    page = browser.get(response.headers["Content-Location"])
    assert page.status_code == 200 and b"Modern History" in page.data


def test_the_page_a_launch_answers_with_shows_what_the_launch_lets_the_user_do(browser, lms):
    assert b"Add media" not in lms.launch(browser, roles=[LEARNER]).data
    # the same person, now teaching (roles follow the LMS): the role this launch gave
    assert b"Add media" in lms.launch(browser, roles=[INSTRUCTOR]).data
    assert b"Add media" not in lms.launch(browser, roles=[LEARNER]).data


def test_a_course_also_shared_with_another_group_shows_the_strongest_role(browser, lms, db):
    assert b"Add media" not in lms.launch(browser, roles=[LEARNER]).data
    category, user = one(db, Category), one(db, User)
    staff = RBACGroup(name="Media team")
    db.session.add(staff)
    db.session.flush()
    db.session.execute(sa.insert(rbac_group_category).values(
        rbac_group_id=staff.id, category_id=category.id))
    db.session.add(RBACMembership(rbac_group_id=staff.id, user_id=user.id,
                                  role=GroupRole.CONTRIBUTOR))
    db.session.commit()
    assert b"Add media" in lms.launch(browser, roles=[LEARNER]).data


def test_the_page_a_launch_answers_with_lives_at_its_own_address(browser, lms, db, make_user):
    lms.launch(browser)
    db.session.add(Media(title="Lecture 1", file_path="x.mp4", mime_type="video/mp4", size=1,
                         owner=make_user("teacher"), category=one(db, Category),
                         visibility=Visibility.MEMBERS))
    db.session.commit()
    response = lms.launch(browser)
    url = response.headers["Content-Location"]
    page = response.get_data(as_text=True)
    assert "Lecture 1" in page
    assert f'src="/static/js/address.js" data-address="{url}"' in page, "history.replaceState"
    assert f'<form method="get" action="{url}"' in page, "a search goes to the page, not the launch"
    assert "/lti/launch" not in page
    reload = browser.get(url)
    assert reload.status_code == 200 and "Modern History" in reload.get_data(as_text=True)
    assert b"address.js" not in reload.data, "only the launch's answer needs its address set"


def test_course_titles_are_kept_current(browser, lms, db):
    lms.launch(browser)
    lms.launch(browser, context={"id": "24", "title": "Modern History (2027)", "label": "H"})
    assert one(db, Category).title == "Modern History (2027)"
    assert one(db, RBACGroup).name == "Modern History (2027)"


def test_one_person_in_two_courses_has_the_role_each_course_gives(browser, lms, db):
    history = {"id": "24", "title": "Modern History", "label": "H"}
    physics = {"id": "31", "title": "Physics", "label": "P"}
    lms.launch(browser, context=history, roles=[INSTRUCTOR], sub="900", email="t@example.edu")
    assert b"Add media" in lms.launch(browser, context=physics, roles=[INSTRUCTOR]).data
    # a returning user in a course they had not joined, then in one they had
    joined = lms.launch(browser, context=history, roles=[LEARNER])
    assert b"Modern History" in joined.data and b"Add media" not in joined.data
    assert b"Add media" in lms.launch(browser, context=physics, roles=[INSTRUCTOR]).data
    # and in a course new to the tool
    chemistry = lms.launch(browser, context={"id": "40", "title": "Chemistry"}, roles=[LEARNER])
    assert b"Chemistry" in chemistry.data and b"Add media" not in chemistry.data
    user = db.session.scalar(sa.select(User).where(User.email == "g.hopper@example.edu"))
    roles = dict(db.session.execute(
        sa.select(Category.title, RBACMembership.role)
        .join(rbac_group_category, rbac_group_category.c.category_id == Category.id)
        .join(RBACMembership,
              RBACMembership.rbac_group_id == rbac_group_category.c.rbac_group_id)
        .where(RBACMembership.user_id == user.id)).all())
    assert roles == {"Modern History": GroupRole.MEMBER, "Physics": GroupRole.MANAGER,
                     "Chemistry": GroupRole.MEMBER}


def test_without_auto_categories_no_course_space_is_made(browser, lms, db):
    lms.platform.auto_create_categories = False
    db.session.commit()
    response = lms.launch(browser)
    assert response.status_code == 200
    assert count(db, Category) == 0 and count(db, RBACGroup) == 0
    assert response.headers["Content-Location"].endswith("/media/")
    assert one(db, LTIResourceLink).category_id is None


def test_launch_without_context_lands_on_own_media(browser, lms, db):
    response = lms.launch(browser, context=DROP)
    assert response.headers["Content-Location"].endswith("/media/")
    assert count(db, Category) == 0
    page = browser.get("/media/")
    assert page.status_code == 200 and b"outside a course" in page.data
    assert one(db, LTIResourceLink).context_id == ""


def test_resource_link_is_recorded_and_counted(browser, lms, db):
    lms.launch(browser)
    lms.launch(browser, sub="319", ext={"user_username": "ada"})
    link = one(db, LTIResourceLink)
    assert (link.context_id, link.resource_link_id) == ("24", "57")
    assert link.resource_link_title == "Lecture 3 recording"
    assert link.context_title == "Modern History" and link.context_label == "HIST210"
    assert link.launch_count == 2 and link.last_launch is not None
    assert link.category_id == one(db, Category).id
    assert link.rbac_group_id == one(db, RBACGroup).id
    assert [e.resource_link_id for e in db.session.scalars(sa.select(LTILaunchLog))] == [
        link.id, link.id]


def test_custom_media_id_attaches_the_media_and_opens_it(browser, lms, db, make_user):
    media = Media(title="Lecture 3", file_path="x.mp4", mime_type="video/mp4", size=1,
                  owner=make_user("teacher"), visibility=Visibility.PUBLIC)
    db.session.add(media)
    db.session.commit()
    response = lms.launch(browser, custom={"media_id": str(media.id)})
    assert response.headers["Content-Location"].endswith(f"/media/{media.id}")
    assert one(db, LTIResourceLink).media_id == media.id
    assert b"Lecture 3" in browser.get(response.headers["Content-Location"]).data


def test_custom_media_id_of_missing_media_is_ignored(browser, lms, db):
    response = lms.launch(browser, custom={"media_id": "4242"})
    assert response.status_code == 200
    assert one(db, LTIResourceLink).media_id is None


# The log and the pages


def test_success_is_logged_with_sanitized_claims_and_the_ip(browser, lms, db):
    login = lms.login(browser)
    token = lms.sign(lms.claims(nonce=login.nonce))
    lms.launch(browser, token=token, login=login)
    entry = one(db, LTILaunchLog)
    assert entry.success and entry.user_id == one(db, User).id
    assert entry.ip_address == "127.0.0.1"
    stored = json.dumps(entry.claims)
    assert token not in stored and login.nonce not in stored
    assert "g.hopper@example.edu" not in stored and "Grace Hopper" not in stored
    assert "sesskey" not in stored and "Ab12Cd34Ef" not in stored
    claims = entry.claims
    assert claims["sub"] == "318" and claims["email"] == "g***@example.edu"
    assert claims["https://purl.imsglobal.org/spec/lti/claim/context"]["id"] == "24"
    assert claims["https://purl.imsglobal.org/spec/lti/claim/roles"] == [LEARNER]


def test_the_ip_comes_from_the_trusted_proxy(app, lms, db):
    app.config["TRUSTED_PROXIES"] = 1
    from lti_tool import security

    security.init_app(app)
    client = app.test_client()
    client.environ_base.update({"HTTP_X_FORWARDED_FOR": "203.0.113.9",
                                "HTTP_X_FORWARDED_PROTO": "https"})
    lms.launch(client)
    assert one(db, LTILaunchLog).ip_address == "203.0.113.9"


def test_lti_pages_may_be_framed_by_the_platform_only(browser, lms, db):
    response = lms.launch(browser)  # the course's page, in the launch's response
    assert response.headers["Content-Security-Policy"].endswith(
        "frame-ancestors 'self' https://lms.example.edu")
    page = browser.get(response.headers["Content-Location"])
    assert page.headers["Content-Security-Policy"].endswith(
        "frame-ancestors 'self' https://lms.example.edu"), "self: the player frames its PDFs"
    assert "X-Frame-Options" not in page.headers


def test_error_page_fix_is_shown_to_teachers_and_a_reference_to_learners(browser, lms, db):
    learner = lms.launch(browser, deployment_id="9")
    assert b"tell your teacher or administrator" in learner.data
    assert b"How to fix it" not in learner.data
    teacher = lms.launch(browser, deployment_id="9", roles=[INSTRUCTOR])
    assert b"How to fix it" in teacher.data
    assert b"Deployment ID 9" in teacher.data and b"Deployment IDs" in teacher.data


def test_login_redirects_to_the_platform_with_our_launch_url(browser, lms):
    login = lms.login(browser, target_link_uri="https://tool.example.org/lti/launch?media=3")
    params = login.params
    assert login.response.headers["Location"].startswith("https://lms.example.edu/mod/lti/auth.php?")
    assert params["redirect_uri"] == "https://tool.example.org/lti/launch"
    assert (params["scope"], params["response_type"], params["response_mode"]) == (
        "openid", "id_token", "form_post")
    assert params["client_id"] == lms.client_id and params["login_hint"] == "318"
    assert json.loads(params["lti_message_hint"])["cmid"] == 57
    assert len(params["nonce"]) >= 32 and params["state"] != params["nonce"]
    cookies = [c for c in login.response.headers.getlist("Set-Cookie") if "lti1p3-state" in c]
    assert cookies and all(
        "Secure" in c and "SameSite=None" in c and "Partitioned" in c and "HttpOnly" in c
        for c in cookies
    )


def test_login_first_checks_that_cookies_work(browser, lms):
    response = browser.post("/lti/login", data=lms.login_params())
    assert response.status_code == 200
    assert b"lti1p3_new_window" in response.data
    assert b"Open the media tool in a new window" in response.data
    assert response.headers["Content-Security-Policy"].endswith(
        "frame-ancestors https://lms.example.edu")


def test_the_picker_only_opens_for_its_own_launch(browser, lms):
    lms.launch(browser)
    assert browser.get("/media/picker/not-my-launch").status_code == 403
