"""The platform inbox: refusals from unknown platforms and deployments, captured once, capped,
and turned into a platform, a deployment, an approval or a dismissal by an admin."""

import json
import re

import pytest
import sqlalchemy as sa

from lti_tool.models import (
    GlobalRole,
    InboxStatus,
    LTILaunchLog,
    LTIPlatform,
    PlatformInboxEntry,
    RegisteredBy,
)

from .conftest import csrf
from .lms import LTI

UNKNOWN = "https://unknown-lms.example.com"


def entries(db) -> list[PlatformInboxEntry]:
    db.session.expire_all()
    return db.session.scalars(sa.select(PlatformInboxEntry).order_by(PlatformInboxEntry.id)).all()


def count(db, model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def capture_login(browser, lms, **params):
    return lms.login(browser, **params).response


# Capture


def test_a_login_from_an_unknown_issuer_is_captured_and_the_page_says_so(browser, lms, db):
    response = capture_login(browser, lms, iss=UNKNOWN, client_id="c-1", lti_deployment_id="3")
    assert response.status_code == 403
    assert b"administrator has been told" in response.data
    [entry] = entries(db)
    assert (entry.issuer, entry.client_id, entry.deployment_id) == (UNKNOWN, "c-1", "3")
    assert entry.category == "unknown_platform" and entry.attempts == 1
    assert entry.status is InboxStatus.OPEN and entry.platform_id is None
    assert entry.claims is None  # a login carries no claims


def test_repeats_bump_the_counter_and_last_seen(browser, lms, db):
    capture_login(browser, lms, iss=UNKNOWN, client_id="c-1")
    [first] = entries(db)
    first_seen, last_seen = first.first_seen, first.last_seen
    for _ in range(2):
        capture_login(browser, lms, iss=UNKNOWN, client_id="c-1")
    [entry] = entries(db)
    assert entry.attempts == 3
    assert entry.first_seen == first_seen and entry.last_seen >= last_seen


def test_a_launch_with_an_unknown_deployment_is_captured_with_sanitized_claims(
    browser, lms, db
):
    response = lms.launch(browser, deployment_id="999")
    assert response.status_code == 403 and b"administrator has been told" in response.data
    [entry] = entries(db)
    assert (entry.issuer, entry.client_id, entry.deployment_id) == (
        lms.issuer, lms.client_id, "999")
    assert entry.category == "unknown_deployment" and entry.platform_id == lms.platform.id
    stored = json.dumps(entry.claims)
    assert entry.claims[LTI + "tool_platform"]["product_family_code"] == "moodle"
    assert entry.claims[LTI + "context"]["title"] == "Modern History"
    for personal in ("hopper", "Grace", "ghopper", "g.***", "sesskey", '"email"', '"sub"'):
        assert personal.lower() not in stored.lower(), personal
    # the failed-launch log entry is written beside it
    [log] = db.session.scalars(sa.select(LTILaunchLog)).all()
    assert log.error_category == "unknown_deployment"
    # a later login of the same deployment (no claims) keeps the launch's claims
    capture_login(browser, lms, lti_deployment_id="999")
    [entry] = entries(db)
    assert entry.attempts == 2 and entry.claims[LTI + "context"]["title"] == "Modern History"


def test_other_refusals_and_successes_are_not_captured(browser, lms, db):
    assert lms.launch(browser).status_code == 200
    lms.platform.active = False
    db.session.commit()
    response = capture_login(browser, lms)
    assert response.status_code == 403 and b"has been told" not in response.data
    capture_login(browser, lms, iss=UNKNOWN, client_id=None)  # no client ID: not captured
    assert entries(db) == []


def test_flooding_cannot_grow_the_table_past_the_cap(app, browser, lms, db):
    app.config["INBOX_MAX_ROWS"] = 3
    capture_login(browser, lms, iss=UNKNOWN, client_id="dismissed-one")
    [dismissed] = entries(db)
    dismissed.status = InboxStatus.DISMISSED
    db.session.commit()
    for n in range(6):
        capture_login(browser, lms, iss=f"https://flood{n}.example.com", client_id="c")
        assert count(db, PlatformInboxEntry) <= 3
    kept = {e.issuer for e in entries(db)}
    assert kept == {f"https://flood{n}.example.com" for n in (3, 4, 5)}


def test_the_dismissed_go_first(app, browser, lms, db):
    app.config["INBOX_MAX_ROWS"] = 2
    capture_login(browser, lms, iss="https://old-open.example.com", client_id="c")
    capture_login(browser, lms, iss="https://dismissed.example.com", client_id="c")
    entries(db)[1].status = InboxStatus.DISMISSED
    db.session.commit()
    capture_login(browser, lms, iss="https://new.example.com", client_id="c")
    assert {e.issuer for e in entries(db)} == {"https://old-open.example.com",
                                               "https://new.example.com"}


# The admin's side


@pytest.fixture
def captured(browser, lms, db):
    """Builder: capture a refused login; returns its entry."""

    def make(**params) -> PlatformInboxEntry:
        capture_login(browser, lms, **params)
        return db.session.scalars(sa.select(PlatformInboxEntry)
                                  .order_by(PlatformInboxEntry.last_seen.desc())).first()

    return make


def test_the_inbox_lists_entries_and_waiting_registrations(admin, captured, make_platform):
    entry = captured(iss=UNKNOWN, client_id="c-1", lti_deployment_id="3")
    make_platform(name="Canvas waiting", active=False, registration_pending=True,
                  registered_by=RegisteredBy.DYNAMIC)
    page = admin.get("/admin/inbox/")
    assert page.status_code == 200
    assert UNKNOWN.encode() in page.data and b"Canvas waiting" in page.data
    assert f"/admin/inbox/{entry.id}/platform".encode() in page.data
    assert b"/approve" in page.data
    dashboard = admin.get("/admin/")
    assert b"Inbox: 2 waiting" in dashboard.data and b'href="/admin/inbox/"' in dashboard.data
    detail = admin.get(f"/admin/inbox/{entry.id}")
    assert detail.status_code == 200 and b"c-1" in detail.data


@pytest.mark.parametrize("issuer, claims_family, urls", [
    ("https://moodle.example.edu/lms", None, (
        "https://moodle.example.edu/lms/mod/lti/auth.php",
        "https://moodle.example.edu/lms/mod/lti/token.php",
        "https://moodle.example.edu/lms/mod/lti/certs.php")),
    ("https://school.example.edu", "moodle", (
        "https://school.example.edu/mod/lti/auth.php",
        "https://school.example.edu/mod/lti/token.php",
        "https://school.example.edu/mod/lti/certs.php")),
    ("https://canvas.instructure.com", None, (
        "https://sso.canvaslms.com/api/lti/authorize_redirect",
        "https://sso.canvaslms.com/login/oauth2/token",
        "https://sso.canvaslms.com/api/lti/security/jwks")),
    ("https://school.brightspace.com", None, (
        "https://school.brightspace.com/d2l/lti/authenticate",
        "https://auth.brightspace.com/core/connect/token",
        "https://school.brightspace.com/d2l/.well-known/jwks")),
    ("https://lms.school.example", "desire2learn", (
        "https://lms.school.example/d2l/lti/authenticate",
        "https://auth.brightspace.com/core/connect/token",
        "https://lms.school.example/d2l/.well-known/jwks")),
], ids=["moodle-by-host", "moodle-by-claims", "canvas", "brightspace", "brightspace-by-claims"])
def test_create_platform_from_an_entry_prefills_and_guesses_the_urls(
    admin, captured, db, issuer, claims_family, urls
):
    entry = captured(iss=issuer, client_id="cl-9", lti_deployment_id="4")
    if claims_family:
        entry.claims = {LTI + "tool_platform": {"product_family_code": claims_family}}
        db.session.commit()
    page = admin.get(f"/admin/inbox/{entry.id}/platform")
    assert page.status_code == 200
    for value in (issuer, "cl-9", *urls):
        assert f'value="{value}"'.encode() in page.data, value
    assert b"\n4</textarea>" in page.data
    fields = {"csrf_token": csrf(page), "name": "From the inbox", "platform_id": issuer,
              "client_id": "cl-9", "deployment_ids": "4", "auth_login_url": urls[0],
              "auth_token_url": urls[1], "key_set_url": urls[2], "active": "y",
              "enable_deep_linking": "y"}
    response = admin.post(f"/admin/inbox/{entry.id}/platform", data=fields)
    assert response.status_code == 303, response.data[:2000]
    platform = db.session.scalar(sa.select(LTIPlatform).where(LTIPlatform.name == "From the inbox"))
    assert (platform.platform_id, platform.client_id, platform.deployment_ids) == (
        issuer, "cl-9", ["4"])
    assert (platform.auth_login_url, platform.auth_token_url, platform.key_set_url) == urls
    [entry] = entries(db)
    assert entry.status is InboxStatus.RESOLVED
    assert issuer.encode() not in admin.get("/admin/inbox/").data.split(b'id="refused"')[1]


def test_add_deployment_then_the_same_launch_succeeds(admin, browser, lms, db):
    assert lms.launch(browser, deployment_id="999").status_code == 403
    [entry] = entries(db)
    confirm = admin.get(f"/admin/inbox/{entry.id}/deployment")
    assert confirm.status_code == 200 and b"Add deployment 999 to Test Moodle" in confirm.data
    assert lms.platform.deployment_ids == ["5"]  # a GET changes nothing
    response = admin.post(f"/admin/inbox/{entry.id}/deployment",
                          data={"csrf_token": csrf(confirm)})
    assert response.status_code == 303
    db.session.expire_all()
    assert lms.platform.deployment_ids == ["5", "999"]
    assert entries(db)[0].status is InboxStatus.RESOLVED
    assert b"999" not in admin.get("/admin/inbox/").data.split(b'id="refused"')[1]
    assert lms.launch(browser, deployment_id="999").status_code == 200


def test_approve_a_waiting_registration(admin, lms, browser, db):
    lms.platform.active = False
    lms.platform.registration_pending = True
    lms.platform.registered_by = RegisteredBy.DYNAMIC
    db.session.commit()
    refused = lms.login(browser).response
    assert refused.status_code == 403
    assert b"waiting for approval" in refused.data and b"switched off" not in refused.data
    confirm = admin.get(f"/admin/inbox/registrations/{lms.platform.id}/approve")
    assert confirm.status_code == 200 and b"Approve Test Moodle?" in confirm.data
    response = admin.post(f"/admin/inbox/registrations/{lms.platform.id}/approve",
                          data={"csrf_token": csrf(confirm)})
    assert response.status_code == 303
    db.session.expire_all()
    assert lms.platform.active and not lms.platform.registration_pending
    assert lms.launch(browser).status_code == 200


def test_dismiss(admin, captured, db):
    entry = captured(iss=UNKNOWN, client_id="c-1")
    confirm = admin.get(f"/admin/inbox/{entry.id}/dismiss")
    assert confirm.status_code == 200 and b"Dismiss the entry" in confirm.data
    admin.post(f"/admin/inbox/{entry.id}/dismiss", data={"csrf_token": csrf(confirm)})
    [entry] = entries(db)
    assert entry.status is InboxStatus.DISMISSED
    listing = admin.get("/admin/inbox/").data
    assert b"Dismissed the entry" in listing and UNKNOWN.encode() not in listing.split(
        b'id="refused"')[1]
    assert UNKNOWN.encode() in admin.get("/admin/inbox/?closed=1").data
    captured(iss=UNKNOWN, client_id="c-1")  # seen again: stays dismissed, counted
    [entry] = entries(db)
    assert entry.status is InboxStatus.DISMISSED and entry.attempts == 2


def test_managers_read_but_cannot_change(client, make_user, captured, db, make_platform):
    entry = captured(iss=UNKNOWN, client_id="c-1", lti_deployment_id="3")
    waiting = make_platform(active=False, registration_pending=True)
    make_user("manager", password="long-password-2", global_role=GlobalRole.MANAGER)
    page = client.get("/admin/login")
    client.post("/admin/login", data={"username": "manager", "password": "long-password-2",
                                      "csrf_token": csrf(page)})
    listing = client.get("/admin/inbox/")
    assert listing.status_code == 200 and UNKNOWN.encode() in listing.data
    assert b"/dismiss" not in listing.data and b"/approve" not in listing.data
    token = csrf(client.get("/admin/"))
    for url in (f"/admin/inbox/{entry.id}/dismiss", f"/admin/inbox/{entry.id}/platform",
                f"/admin/inbox/registrations/{waiting.id}/approve"):
        assert client.post(url, data={"csrf_token": token}).status_code == 403, url
    assert entries(db)[0].status is InboxStatus.OPEN
    db.session.expire_all()
    assert not waiting.active


def test_posts_without_the_csrf_token_are_refused(admin, captured, db, make_platform):
    entry = captured(iss=UNKNOWN, client_id="c-1")
    waiting = make_platform(active=False, registration_pending=True)
    for url in (f"/admin/inbox/{entry.id}/dismiss", f"/admin/inbox/{entry.id}/deployment",
                f"/admin/inbox/registrations/{waiting.id}/approve"):
        response = admin.post(url, data={})
        assert response.status_code in (200, 400), url  # the confirmation again, or 400
    assert entries(db)[0].status is InboxStatus.OPEN
    db.session.expire_all()
    assert not waiting.active
    response = admin.post(f"/admin/inbox/{entry.id}/platform", data={"name": "x"})
    assert response.status_code == 400 and count(db, LTIPlatform) == 2  # the LMS and `waiting`


def test_platform_approve_on_the_command_line(runner, lms, browser, db):
    lms.platform.active = False
    lms.platform.registration_pending = True
    db.session.commit()
    result = runner.invoke(args=["platform", "approve", lms.platform.name])
    assert result.exit_code == 0 and "Approved Test Moodle" in result.output
    db.session.expire_all()
    assert lms.platform.active and not lms.platform.registration_pending
    assert lms.launch(browser).status_code == 200
    again = runner.invoke(args=["platform", "approve", lms.platform.name])
    assert again.exit_code == 2 and "not waiting for approval" in again.output
    assert runner.invoke(args=["platform", "approve", "No such LMS"]).exit_code == 2


def test_a_long_inbox_pages_by_last_seen(admin, db):
    from datetime import UTC, datetime, timedelta

    from lti_tool.services.inbox import PAGE_SIZE

    start = datetime(2026, 11, 1, tzinfo=UTC)
    for n in range(PAGE_SIZE + 10):
        for status in (InboxStatus.OPEN, InboxStatus.DISMISSED):
            db.session.add(PlatformInboxEntry(
                issuer=f"https://{status.value}-{n:03d}.example.com", client_id="c",
                deployment_id="", category="unknown_platform", status=status,
                first_seen=start, last_seen=start + timedelta(minutes=n)))
    db.session.commit()

    def issuers(html: bytes, status: InboxStatus) -> list[str]:
        return re.findall(rf"https://{status.value}-(\d+)\.example\.com</a>", html.decode())

    first = admin.get("/admin/inbox/").data
    shown = issuers(first, InboxStatus.OPEN)
    assert shown == [f"{n:03d}" for n in range(PAGE_SIZE + 9, 9, -1)], "latest seen first"
    later = re.search(rb'href="([^"]+)" rel="next">Seen earlier', first).group(1)
    second = admin.get(later.decode().replace("&amp;", "&")).data
    assert issuers(second, InboxStatus.OPEN) == [f"{n:03d}" for n in range(9, -1, -1)]
    assert b'rel="next"' not in second and b"Latest seen</a>" in second
    made_up = admin.get("/admin/inbox/?after=99999999999999999999").data
    assert issuers(made_up, InboxStatus.OPEN) == shown, "a cursor naming nothing: first page"

    closed = admin.get("/admin/inbox/?closed=1").data
    assert len(issuers(closed, InboxStatus.DISMISSED)) == PAGE_SIZE
    later = re.search(rb'href="([^"]+closed_after[^"]+)" rel="next"', closed).group(1)
    rest = admin.get(later.decode().replace("&amp;", "&")).data
    assert issuers(rest, InboxStatus.DISMISSED) == [f"{n:03d}" for n in range(9, -1, -1)]
    assert issuers(rest, InboxStatus.OPEN) == shown, "the open list keeps its own page"
