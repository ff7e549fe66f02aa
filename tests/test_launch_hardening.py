"""Launch hardening (issue 10): launch data at rest, usernames, error categories and roles."""

import os
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jwt
import sqlalchemy as sa

from lti_tool.cache_backends import AtomicRedisCache
from lti_tool.extensions import cache
from lti_tool.models import GroupRole, LTILaunchLog, LTIRoleMapping, Media, User, Visibility

from .lms import DL_SETTINGS, INSTRUCTOR, LEARNER, LTI
from .test_deep_linking import REFERER, answer, csrf, open_picker, verify_as_the_platform

DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"
PRESENTATION = {"locale": "en", "document_target": "iframe",
                "return_url": "https://lms.example.edu/mod/lti/return.php?sesskey=PresSess99"}


def everything_cached() -> str:
    """Every value in the shared cache, as text: what a reader of the cache files would see."""
    backend = cache.cache
    values = []
    if isinstance(backend, AtomicRedisCache):
        client = backend._read_client
        for key in client.scan_iter(f"{backend._get_prefix()}*"):
            values.append(backend.serializer.loads(client.get(key)))
    else:
        for folder, _, names in os.walk(backend._path):
            for name in names:
                if name.startswith("counters.lock"):
                    continue
                with open(os.path.join(folder, name), "rb") as f:
                    f.read(struct.calcsize("I"))
                    values.append(backend.serializer.load(f))
    return repr(values)


def last_log(db) -> LTILaunchLog:
    db.session.expire_all()
    return db.session.scalars(sa.select(LTILaunchLog).order_by(LTILaunchLog.id.desc())).first()


# Point 9: the launch-data cache keeps only what the picker's answer needs.


def test_a_deep_linking_launch_keeps_no_personal_data_in_the_cache(browser, lms, db, make_user):
    owner = make_user("owner")
    media = Media(title="Open lecture", file_path="o.mp4", mime_type="video/mp4", size=1,
                  owner=owner, visibility=Visibility.PUBLIC)
    db.session.add(media)
    db.session.commit()
    dl = lms.claims(message_type="LtiDeepLinkingRequest")[DL_SETTINGS] | {"data": "opaque-7"}
    url, page = open_picker(browser, lms, launch_presentation=PRESENTATION, **{DL_SETTINGS: dl})
    stored = everything_cached()
    for personal in ("g.hopper@example.edu", "Grace", "Hopper", "ghopper", "PresSess99",
                     "Modern History", "HIST210"):
        assert personal not in stored
    # The deep-linking return URL is kept exactly as sent (the LMS needs its sesskey back).
    assert dl["deep_link_return_url"] in stored
    response = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(page), "media_ids": [str(media.id)], "action": "add"})
    action, token = answer(response)
    assert action == dl["deep_link_return_url"]
    claims = verify_as_the_platform(browser, lms, token)
    assert claims[DL + "data"] == "opaque-7"
    assert claims[LTI + "deployment_id"] == lms.deployment_id
    [item] = claims[DL + "content_items"]
    assert item["custom"] == {"media_id": str(media.id)}


def test_a_resource_link_launch_leaves_nothing_personal_in_the_cache(browser, lms, db):
    assert lms.launch(browser, launch_presentation=PRESENTATION).status_code == 200
    stored = everything_cached()
    for personal in ("g.hopper@example.edu", "Grace", "Hopper", "ghopper", "PresSess99",
                     "Ab12Cd34Ef"):
        assert personal not in stored


# Point 11: the standard preferred_username claim names the local user.


def test_preferred_username_names_the_user_after_moodles_username(browser, lms, db):
    lms.launch(browser, ext={"lms": "open-edx"}, preferred_username="Grace_H")
    assert db.session.scalar(sa.select(User.username)) == "grace_h"


def test_moodles_username_wins_over_preferred_username(browser, lms, db):
    lms.launch(browser, preferred_username="someone-else")
    assert db.session.scalar(sa.select(User.username)) == "ghopper"


# Point 13: a PyLTI1p3 refusal the launch did not pre-empt has its own category.


def test_a_pylti1p3_refusal_is_not_filed_as_blocked_cookies(browser, lms, db):
    login = lms.login(browser)
    # The state cookie came back, PyLTI1p3's session cookie did not: only PyLTI1p3 checks it.
    browser.delete_cookie("lti1p3-session-id", domain="tool.example.org")
    response = lms.launch(browser, login=login, roles=[INSTRUCTOR])
    assert response.status_code == 400
    entry = last_log(db)
    assert entry.error_category == "launch_rejected"
    assert "cookie session-id" in entry.error_message
    assert b"The media tool could not open" in response.data
    assert b"blocked the tool&#39;s cookie" not in response.data
    assert b"PyLTI1p3 refused the launch" in response.data


# Point 15: the error page decides "teacher" with the platform's role mappings.


def test_the_error_page_uses_the_platforms_role_mappings(browser, lms, db):
    db.session.add(LTIRoleMapping(platform_id=lms.platform.id, lti_role="Learner",
                                  global_role=None, group_role=GroupRole.CONTRIBUTOR))
    db.session.commit()
    response = lms.launch(browser, deployment_id="9", roles=[LEARNER])
    assert response.status_code == 403
    assert b"How to fix it" in response.data
    assert b"Deployment ID 9" in response.data


def test_without_a_mapping_a_learner_sees_no_fix(browser, lms, db):
    response = lms.launch(browser, deployment_id="9", roles=[LEARNER])
    assert b"How to fix it" not in response.data


# Code health: numbers people read come from the constants that enforce them.


def test_the_expiry_fix_names_the_leeway_the_check_uses(browser, lms, db):
    from lti_tool.services.message_launch import LEEWAY

    now = int(time.time())
    response = lms.launch(browser, iat=now - 3 * LEEWAY, exp=now - 2 * LEEWAY,
                          roles=[INSTRUCTOR])
    assert last_log(db).error_category == "expired"
    assert f"({LEEWAY} s leeway allowed)".encode() in response.data


# Point 16: a key made on demand is committed before it signs, once, even under a race.


def test_the_first_deep_linking_answer_signs_with_a_published_key(browser, lms, db, make_user):
    from lti_tool.models import ToolKey

    assert db.session.scalar(sa.select(sa.func.count()).select_from(ToolKey)) == 0
    media = Media(title="Open lecture", file_path="o.mp4", mime_type="video/mp4", size=1,
                  owner=make_user("owner"), visibility=Visibility.PUBLIC)
    db.session.add(media)
    db.session.commit()
    url, page = open_picker(browser, lms)
    response = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(page), "media_ids": [str(media.id)], "action": "add"})
    token = answer(response)[1]
    published = [k["kid"] for k in browser.get("/lti/jwks").json["keys"]]
    assert published == [jwt.get_unverified_header(token)["kid"]]
    verify_as_the_platform(browser, lms, token)
    url, page = open_picker(browser, lms)
    second = browser.post(url, headers=REFERER, data={
        "csrf_token": csrf(page), "action": "cancel"})
    assert jwt.get_unverified_header(answer(second)[1])["kid"] == published[0]
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ToolKey)) == 1


def test_two_workers_making_the_first_key_at_once_end_with_one(app, db):
    from lti_tool.models import ToolKey
    from lti_tool.services import keys

    barrier = threading.Barrier(4)

    def first_key() -> str:
        with app.app_context():
            barrier.wait(timeout=30)
            try:
                return keys.ensure_current_key().kid
            finally:
                db.session.remove()

    with ThreadPoolExecutor(4) as pool:
        kids = set(pool.map(lambda _: first_key(), range(4)))
    db.session.expire_all()
    stored = db.session.scalars(sa.select(ToolKey.kid)).all()
    assert len(stored) == 1 and kids == set(stored)
