"""The error pages as the LMS shows them (Chromium, cross-site iframe of 700 and 400 px): the
login step's refusal with its fix and "Try again", the launch step's "Back to the course", the
HTTP error pages' way back; axe-core clean and no horizontal scrolling at 400 px."""

import pytest

from .journeys import FRAMES, NARROW, assert_accessible, horizontal_overflow, open_course
from .lms import LEARNER
from .test_browser import (  # noqa: F401  (fixtures)
    CHROMEDRIVER,
    CHROMIUM,
    assert_no_policy_violations,
    browser_factory,
    site_lms,
    tool_url,
    wait_for_text,
)

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium not installed")


def fits(driver, frame) -> None:
    if frame == NARROW:
        assert horizontal_overflow(driver) == 0


@pytest.mark.parametrize("frame", FRAMES)
def test_a_refused_login_shows_the_fix_and_try_again_works_once_fixed(
    browser_factory, site_lms, db, frame
):
    from selenium.webdriver.common.by import By

    site_lms.deployment_id = "6"  # the LMS's new course link, not yet known to the tool
    driver = browser_factory()
    open_course(driver, site_lms, FRAMES[frame])
    wait_for_text(driver, "This course's LMS is not set up for the media tool yet")
    assert driver.find_elements(By.CSS_SELECTOR, ".site-header") == []
    fits(driver, FRAMES[frame])
    assert_accessible(driver)
    # The section for teachers and LMS administrators: the fix, folded until asked for.
    section = driver.find_element(By.CSS_SELECTOR, "section.fix")
    assert "For teachers and LMS administrators" in section.text
    fix = section.find_element(By.CSS_SELECTOR, "details p")
    assert not fix.is_displayed()
    section.find_element(By.TAG_NAME, "summary").click()
    assert fix.is_displayed()
    assert "Deployment ID 6 is not allowed for platform 'Test Moodle'" in fix.text
    assert "Deployment ID\n6" in section.text or "Deployment ID 6" in section.text
    fits(driver, FRAMES[frame])
    assert_accessible(driver)

    # The LMS administrator adds the deployment; Try again goes on into the course.
    site_lms.platform.deployment_ids = ["5", "6"]
    db.session.commit()
    driver.find_element(By.XPATH, "//button[normalize-space()='Try again']").click()
    wait_for_text(driver, "Modern History")
    assert "/media/category/" in driver.execute_script("return location.pathname")
    assert_no_policy_violations(driver)


def test_a_switched_off_platform_is_explained_in_a_narrow_frame(browser_factory, site_lms, db):
    from selenium.webdriver.common.by import By

    site_lms.platform.active = False
    db.session.commit()
    driver = browser_factory()
    open_course(driver, site_lms, NARROW)
    wait_for_text(driver, "The media tool is switched off for this LMS")
    assert horizontal_overflow(driver) == 0
    driver.find_element(By.TAG_NAME, "summary").click()
    assert "activate it in the tool's admin" in driver.find_element(By.CSS_SELECTOR, ".fix").text
    assert_accessible(driver)


@pytest.mark.parametrize("frame", FRAMES)
def test_a_refused_launch_leads_back_to_the_course(browser_factory, site_lms, frame):
    from selenium.webdriver.common.by import By

    # The login names the known deployment; the id_token another one (launch step refusal).
    claims = site_lms.claims
    site_lms.claims = lambda *a, **kw: claims(*a, **({"deployment_id": "99"} | kw))
    site_lms.browser_roles = [LEARNER]
    driver = browser_factory()
    open_course(driver, site_lms, FRAMES[frame])
    text = wait_for_text(driver, "This course's LMS is not set up for the media tool yet")
    assert "How to fix" not in text, "a learner gets no fix"
    fits(driver, FRAMES[frame])
    assert_accessible(driver)
    back = driver.find_element(By.LINK_TEXT, "Back to the course")
    assert back.get_attribute("target") == "_top"
    assert back.value_of_css_property("text-decoration-line") == "none", "a button, not a link"
    back.click()
    driver.switch_to.default_content()
    wait_for_text(driver, "Back in the course")
    assert "/mod/lti/return.php" in driver.current_url


@pytest.mark.parametrize("frame", FRAMES)
def test_an_http_error_in_the_frame_has_a_way_back(browser_factory, site_lms, frame):
    from selenium.webdriver.common.by import By

    driver = browser_factory()
    open_course(driver, site_lms, FRAMES[frame])
    wait_for_text(driver, "Modern History")
    course = driver.execute_script("return location.pathname")
    driver.execute_script("location.href = '/media/987654'")
    wait_for_text(driver, "This page does not exist")
    assert driver.find_elements(By.CSS_SELECTOR, ".site-header") == []
    fits(driver, FRAMES[frame])
    assert_accessible(driver)
    driver.find_element(By.LINK_TEXT, "Back to course media").click()
    wait_for_text(driver, "Modern History")
    assert driver.execute_script("return location.pathname") == course


def test_an_http_error_outside_the_lms_is_accessible(browser_factory, tool_url):
    from selenium.webdriver.common.by import By

    driver = browser_factory()
    driver.get(f"{tool_url}/no/such/page")
    wait_for_text(driver, "This page does not exist")
    assert driver.find_elements(By.CSS_SELECTOR, ".site-header")
    assert_accessible(driver)
    driver.get(f"{tool_url}/media/")
    wait_for_text(driver, "Please open the media tool again from your course.")
    assert_accessible(driver)
