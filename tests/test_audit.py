"""The launch-log viewer: filters, keyset pages, detail, CSV export, retention, access."""

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from lti_tool.models import LaunchType, LTILaunchLog, LTIResourceLink, LTIUserMapping

from .conftest import csrf
from .lms import INSTRUCTOR


@pytest.fixture
def logs(db, make_platform, make_user):
    """Entries across two platforms, two users and a course, one a minute apart."""
    moodle, canvas = make_platform(name="Moodle"), make_platform(name="Canvas")
    alice, bob = make_user("alice"), make_user("bob")
    db.session.add(LTIUserMapping(platform_id=moodle.id, lti_user_id="sub-alice", user=alice))
    link = LTIResourceLink(platform_id=moodle.id, context_id="HIST-24",
                           context_title="Modern History", resource_link_id="57",
                           resource_link_title="Lecture 3")
    db.session.add(link)
    db.session.flush()
    start = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    rows = [
        (moodle, alice, link, True, None, "", LaunchType.RESOURCE_LINK),
        (moodle, None, None, False, "unknown_deployment", "Deployment ID '9' is not allowed",
         LaunchType.RESOURCE_LINK),
        (canvas, bob, None, True, None, "", LaunchType.DEEP_LINKING),
        (moodle, alice, link, False, "expired", "The id_token expired 75 s ago.",
         LaunchType.RESOURCE_LINK),
    ]
    for n, (platform, user, res, ok, category, message, kind) in enumerate(rows):
        db.session.add(LTILaunchLog(
            platform_id=platform.id, user_id=user.id if user else None,
            resource_link_id=res.id if res else None, success=ok, error_category=category,
            error_message=message, launch_type=kind, ip_address="203.0.113.7",
            claims={"sub": "sub-x", "note": 'comma, "quote"\nnewline ünïcode'},
            created_at=start + timedelta(minutes=n)))
    db.session.commit()
    return {"moodle": moodle, "canvas": canvas}


def ids(page) -> list[int]:
    return [int(i) for i in re.findall(r'href="/audit/(\d+)"', page.get_data(as_text=True))]


def all_ids(db) -> list[int]:
    return db.session.scalars(
        sa.select(LTILaunchLog.id).order_by(LTILaunchLog.created_at.desc())).all()


def test_newest_first_without_a_count(admin, logs, db):
    page = admin.get("/audit/")
    assert page.status_code == 200
    assert ids(page) == all_ids(db)
    assert b"not counted" in page.data


@pytest.mark.parametrize(
    "query, expect",
    [
        ("outcome=failure", [3, 1]),
        ("outcome=success", [2, 0]),
        ("category=expired", [3]),
        ("launch_type=deep_linking", [2]),
        ("user=alice", [3, 0]),
        ("user=sub-alice", [3, 0]),
        ("course=HIST-24", [3, 0]),
        ("course=modern", [3, 0]),
        ("text=deployment", [1]),
        ("date_from=2026-11-20&date_to=2026-11-20", [3, 2, 1, 0]),
        ("date_from=2026-11-21", []),
        ("outcome=failure&user=alice&course=history", [3]),
    ],
)
def test_filters_each_and_combined(admin, logs, db, query, expect):
    order = list(reversed(all_ids(db)))  # by age: 0 is the oldest
    page = admin.get(f"/audit/?{query}")
    assert ids(page) == [order[i] for i in expect]
    assert f"{len(expect)} match".encode() in page.data or (
        not expect and b"0 matches" in page.data)


def test_platform_filter(admin, logs):
    page = admin.get(f"/audit/?platform={logs['canvas'].id}")
    assert len(ids(page)) == 1


def test_pages_go_by_key_to_the_last_and_an_empty_one(admin, db, make_platform):
    platform = make_platform()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    db.session.add_all([LTILaunchLog(platform_id=platform.id, success=True,
                                     created_at=start + timedelta(seconds=n))
                        for n in range(120)])
    db.session.commit()
    seen, url = [], "/audit/"
    while url:
        page = admin.get(url).get_data(as_text=True)
        seen += [int(i) for i in re.findall(r'href="/audit/(\d+)"', page)]
        nxt = re.search(r'href="([^"]+)" rel="next"', page)
        url = nxt.group(1).replace("&amp;", "&") if nxt else None
    assert seen == all_ids(db) and len(seen) == 120
    assert b"No launch matches" in admin.get("/audit/?outcome=failure").data


def test_capped_count_says_more_than(admin, db, make_platform, monkeypatch):
    from lti_tool.services import audit

    monkeypatch.setattr(audit, "COUNT_CAP", 5)
    platform = make_platform()
    db.session.add_all([LTILaunchLog(platform_id=platform.id, success=True) for _ in range(8)])
    db.session.commit()
    assert b"More than 5 matches" in admin.get("/audit/?outcome=success").data


def test_detail_shows_the_fix_claims_and_neighbours(admin, logs, db):
    expired = db.session.scalar(
        sa.select(LTILaunchLog).where(LTILaunchLog.error_category == "expired"))
    page = admin.get(f"/audit/{expired.id}").get_data(as_text=True)
    assert "The id_token expired 75 s ago." in page
    assert "How to fix it" in page and "NTP" in page
    assert "&#34;sub&#34;: &#34;sub-x&#34;" in page or '"sub": "sub-x"' in page
    assert "Modern History / Lecture 3" in page
    assert f"/admin/platforms/{logs['moodle'].id}" in page
    first = all_ids(db)[-1]
    assert f'href="/audit/{first}"' in page, "alice's earlier launch"


def test_the_error_page_reference_opens_the_entry(admin, lms, browser):
    refused = lms.launch(browser, deployment_id="9", roles=[INSTRUCTOR])
    reference = re.search(rb"reference <strong>#(\d+)</strong>", refused.data).group(1)
    page = admin.get(f"/audit/{int(reference)}")
    assert page.status_code == 200 and b"unknown_deployment" in page.data
    assert b"Deployment ID 9 is not allowed for platform" in page.data, "the fix in full"


def test_csv_export_of_the_current_filter_escapes_everything(admin, logs):
    response = admin.get("/audit/export.csv?outcome=failure")
    assert response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:3] == ["id", "time_utc", "platform"]
    assert [r[8] for r in rows[1:]] == ["expired", "unknown_deployment"]
    assert 'comma, \\"quote\\"\\nnewline ünïcode' in rows[1][11]


def test_only_staff_may_read_the_log(client, browser, lms, logs):
    assert client.get("/audit/").status_code == 302
    lms.launch(browser, roles=[INSTRUCTOR])
    assert browser.get("/audit/").status_code == 403
    assert browser.get("/audit/export.csv").status_code == 403


@pytest.mark.parametrize("older_than, left", [("90d", 4), ("1d", 0)])
def test_prune_deletes_old_entries_in_batches(runner, db, logs, older_than, left):
    now = datetime.now(UTC)
    db.session.execute(sa.update(LTILaunchLog).values(created_at=now - timedelta(days=30)))
    db.session.commit()
    result = runner.invoke(args=["audit", "prune", "--older-than", older_than])
    assert result.exit_code == 0, result.output
    assert f"Removed {4 - left} launch log entries" in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LTILaunchLog)) == left


def test_prune_boundary_keeps_the_young_and_batches(runner, db, make_platform):
    from lti_tool.services import audit

    platform = make_platform()
    now = datetime.now(UTC)
    db.session.add_all([LTILaunchLog(platform_id=platform.id, success=True,
                                     created_at=now - timedelta(days=10, minutes=n))
                        for n in range(12)])
    db.session.add(LTILaunchLog(platform_id=platform.id, success=True,
                                created_at=now - timedelta(days=9, hours=23)))
    db.session.commit()
    assert audit.prune(timedelta(days=10), batch=5) == 12
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LTILaunchLog)) == 1


def test_prune_refuses_a_bad_duration(runner):
    result = runner.invoke(args=["audit", "prune", "--older-than", "ninety"])
    assert result.exit_code == 2 and "not a duration" in result.stderr


def test_signing_out_from_the_log(admin):
    page = admin.get("/audit/")
    assert admin.post("/admin/logout", data={"csrf_token": csrf(page)}).status_code == 303
    assert admin.get("/audit/").status_code == 302, "signed out"


def test_the_chart_counts_per_hour_with_failures_apart(admin, logs):
    svg = admin.get("/audit/chart.svg?date_from=2026-11-20&date_to=2026-11-20")
    assert svg.mimetype == "image/svg+xml"
    text = svg.get_data(as_text=True)
    assert "<title>2026-11-20 09:00: 2 ok</title>" in text
    assert "<title>2026-11-20 09:00: 2 failed</title>" in text
    assert ">4</text>" in text, "the hour's total is written above its bar"
    assert text.count("ok</title>") == 24


def test_a_long_range_is_drawn_per_day(admin, logs):
    text = admin.get("/audit/chart.svg?date_from=2026-11-01&date_to=2026-11-30&outcome=failure"
                     ).get_data(as_text=True)
    assert text.count("ok</title>") == 30
    assert "<title>2026-11-20 00:00: 2 failed</title>" in text


def test_a_large_export_streams_every_row_once(admin, db, make_platform):
    platform = make_platform()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    db.session.execute(sa.insert(LTILaunchLog), [
        {"platform_id": platform.id, "success": True, "launch_type": "resource_link",
         "error_message": "", "created_at": start + timedelta(seconds=n)} for n in range(1234)])
    db.session.commit()
    with admin.get("/audit/export.csv", buffered=False) as response:
        chunks = list(response.response)
    assert len(chunks) > 2, "sent in pieces"
    rows = list(csv.reader(io.StringIO("".join(
        c if isinstance(c, str) else c.decode() for c in chunks))))
    assert len(rows) == 1235 and len({r[0] for r in rows[1:]}) == 1234
