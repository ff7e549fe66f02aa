"""Chromium, top level: a refused deployment lands in the inbox; the admin adds it in one
confirmation and the same course opens; the inbox pages pass axe-core."""

import pytest
import sqlalchemy as sa

from lti_tool.models import GlobalRole, InboxStatus, PlatformInboxEntry

from .journeys import assert_accessible, open_course
from .test_browser import (  # noqa: F401  (fixtures)
    CHROMEDRIVER,
    CHROMIUM,
    browser_factory,
    site_lms,
    tool_url,
    wait_for_text,
)
from .test_browser_admin_a11y import sign_in

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium not installed")


def test_an_admin_adds_a_refused_deployment_from_the_inbox(
    browser_factory, site_lms, tool_url, db, make_user
):
    from selenium.webdriver.common.by import By

    driver = browser_factory()
    site_lms.deployment_id = "6"  # a deployment the tool does not know yet
    open_course(driver, site_lms)
    wait_for_text(driver, "administrator has been told")
    # another, unknown LMS: its entry offers "Create platform"
    db.session.add(PlatformInboxEntry(issuer="https://moodle.school.example", client_id="c-2",
                                      deployment_id="2", category="unknown_platform"))
    db.session.commit()
    make_user("root", password="long-password-1", global_role=GlobalRole.ADMIN)

    driver.switch_to.default_content()
    sign_in(driver, tool_url, "root", "long-password-1")
    driver.find_element(By.LINK_TEXT, "Inbox").click()
    wait_for_text(driver, "Refused logins and launches")
    assert_accessible(driver)
    entry = db.session.scalar(sa.select(PlatformInboxEntry).where(
        PlatformInboxEntry.deployment_id == "6"))
    for page in (f"/admin/inbox/{entry.id}", f"/admin/inbox/{entry.id + 1}/platform",
                 f"/admin/inbox/{entry.id}/dismiss"):
        driver.get(f"{tool_url}{page}")
        wait_for_text(driver, "Sign out")
        assert_accessible(driver)

    driver.get(f"{tool_url}/admin/inbox/")
    driver.find_element(By.PARTIAL_LINK_TEXT, "Add deployment").click()
    wait_for_text(driver, "Add deployment 6 to Test Moodle?")
    assert_accessible(driver)
    driver.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
    wait_for_text(driver, "Deployment 6 is allowed for Test Moodle now.")
    assert_accessible(driver)
    db.session.expire_all()
    assert site_lms.platform.deployment_ids == ["5", "6"]
    assert db.session.get(PlatformInboxEntry, entry.id).status is InboxStatus.RESOLVED

    open_course(driver, site_lms)
    wait_for_text(driver, "Modern History")
