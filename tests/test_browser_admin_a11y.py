"""Every admin and audit page, with realistic data, passes axe-core with no serious or critical
violation (Chromium, top level: admin pages are never framed)."""

import pytest
import sqlalchemy as sa

from lti_tool.models import (
    Category,
    GlobalRole,
    LTILaunchLog,
    LTIRoleMapping,
    LTIUserMapping,
    User,
)

from .journeys import axe_violations, open_course
from .test_browser import (  # noqa: F401  (fixtures)
    CHROMEDRIVER,
    CHROMIUM,
    browser_factory,
    site_lms,
    tool_url,
    wait_for_text,
)

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium not installed")


def sign_in(driver, tool_url: str, username: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{tool_url}/admin/login")
    wait_for_text(driver, "Sign in")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
    wait_for_text(driver, "Sign out")


def admin_pages(db, site_lms) -> list[str]:
    platform = site_lms.platform
    db.session.refresh(platform)
    course = db.session.scalar(sa.select(Category).where(Category.lti_context_id == "24"))
    mapping = db.session.scalar(sa.select(LTIRoleMapping))
    entries = db.session.scalars(sa.select(LTILaunchLog).order_by(LTILaunchLog.id)).all()
    assert course and mapping and len(entries) >= 2
    assert db.session.scalar(sa.select(LTIUserMapping)) is not None
    pages = [
        "/admin/", "/admin/setup", f"/admin/platforms/{platform.id}/setup",
        "/admin/platforms/", "/admin/platforms/new", f"/admin/platforms/{platform.id}",
        f"/admin/platforms/{platform.id}/edit", f"/admin/platforms/{platform.id}/delete",
        f"/admin/platforms/{platform.id}/role-mappings/",
        f"/admin/platforms/{platform.id}/role-mappings/new",
        f"/admin/platforms/{platform.id}/role-mappings/{mapping.id}/edit",
        f"/admin/platforms/{platform.id}/role-mappings/{mapping.id}/delete",
        "/admin/links/", "/admin/user-mappings/", "/admin/users/", "/admin/categories/",
        f"/admin/categories/{course.id}",
        "/audit/", f"/audit/?platform={platform.id}&success=0",
    ]
    pages += [f"/audit/{entry.id}" for entry in entries]
    return pages


def test_every_admin_page_passes_axe(browser_factory, site_lms, tool_url, db, make_user):
    from selenium.webdriver.common.by import By

    # Data as an admin meets it: a course and its people from launches (one refused), a role
    # mapping, a local admin.
    driver = browser_factory()
    open_course(driver, site_lms)
    wait_for_text(driver, "Modern History")
    site_lms.deployment_id = "6"  # the next login names a deployment the tool does not know
    open_course(driver, site_lms)
    wait_for_text(driver, "not set up for the media tool")
    db.session.add(LTIRoleMapping(platform_id=site_lms.platform.id, lti_role="Mentor",
                                  group_role=None, global_role=None))
    db.session.commit()
    make_user("root", password="long-password-1", global_role=GlobalRole.ADMIN)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) >= 2

    driver.switch_to.default_content()
    driver.get(f"{tool_url}/admin/login")
    wait_for_text(driver, "Sign in")
    found = {"/admin/login": axe_violations(driver)}
    sign_in(driver, tool_url, "root", "long-password-1")
    for page in admin_pages(db, site_lms):
        driver.get(f"{tool_url}{page}")
        heading = driver.find_elements(By.TAG_NAME, "h1")
        assert heading, f"{page}: no heading ({driver.title})"
        found[page] = axe_violations(driver)
    assert {page: v for page, v in found.items() if v} == {}


def test_every_control_on_the_filtered_lists_has_a_label(browser_factory, site_lms, tool_url,
                                                         db, make_user):

    make_user("root", password="long-password-1", global_role=GlobalRole.ADMIN)
    make_user("teacher", global_role=GlobalRole.USER)
    driver = browser_factory()
    sign_in(driver, tool_url, "root", "long-password-1")
    platform = site_lms.platform.id
    for page in ("/admin/users/", "/audit/", "/admin/links/", "/admin/user-mappings/",
                 "/admin/categories/", "/admin/setup", f"/admin/platforms/{platform}/setup",
                 f"/admin/platforms/{platform}", "/admin/platforms/new", "/admin/"):
        driver.get(f"{tool_url}{page}")
        unlabelled = driver.execute_script(
            "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea,"
            " button')].filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')"
            " && !e.getAttribute('aria-labelledby') && !(e.tagName === 'BUTTON' &&"
            " e.textContent.trim())).map(e => e.outerHTML.slice(0, 120));")
        assert unlabelled == [], page


def test_the_keyboard_focus_stays_visible_on_the_admin(browser_factory, site_lms, tool_url, db,
                                                       make_user):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    make_user("root", password="long-password-1", global_role=GlobalRole.ADMIN)
    driver = browser_factory()
    sign_in(driver, tool_url, "root", "long-password-1")
    driver.get(f"{tool_url}/admin/platforms/{site_lms.platform.id}")
    wait_for_text(driver, "Test Moodle")
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    assert driver.switch_to.active_element.text == "Skip to content"
    for _ in range(15):
        focused = driver.switch_to.active_element
        outline = driver.execute_script(
            "const s = getComputedStyle(arguments[0]); return [s.outlineStyle, s.outlineWidth];",
            focused)
        assert outline[0] != "none" and outline[1] != "0px", focused.get_attribute("outerHTML")
        focused.send_keys(Keys.TAB)
