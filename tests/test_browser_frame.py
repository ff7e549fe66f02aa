"""The frame layout as the LMS shows it: `/` inside and outside the course, the skip link first,
no header bar, no horizontal scrolling at 400 px, axe-core clean (Chromium, cross-site iframe)."""

import pytest

from .journeys import FRAMES, assert_accessible, horizontal_overflow, open_course
from .test_browser import (  # noqa: F401  (fixtures)
    CHROMEDRIVER,
    CHROMIUM,
    browser_factory,
    site_lms,
    tool_url,
    wait_for_text,
)

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium not installed")


@pytest.mark.parametrize("frame", FRAMES)
def test_the_course_page_in_the_frame_has_no_header_and_fits(browser_factory, site_lms, frame):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser_factory()
    open_course(driver, site_lms, FRAMES[frame])
    wait_for_text(driver, "Modern History")
    assert driver.find_elements(By.CSS_SELECTOR, ".site-header") == []
    assert horizontal_overflow(driver) == 0
    # The first Tab stop is the skip link, and it takes focus to the content.
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    first = driver.switch_to.active_element
    assert first.text == "Skip to content"
    assert_accessible(driver)


def test_home_inside_the_lms_goes_to_the_course(browser_factory, site_lms, tool_url):
    driver = browser_factory()
    open_course(driver, site_lms)
    wait_for_text(driver, "Modern History")
    course = driver.execute_script("return location.pathname")
    driver.execute_script("location.href = '/'")  # inside the frame: the launch's session
    wait_for_text(driver, "Modern History")
    assert driver.execute_script("return location.pathname") == course


def test_home_outside_the_lms_says_what_the_tool_is(browser_factory, tool_url):
    from selenium.webdriver.common.by import By

    driver = browser_factory()
    driver.get(f"{tool_url}/")
    text = wait_for_text(driver, "open the media activity from your course")
    assert "sign in" in text
    driver.find_element(By.LINK_TEXT, "sign in").click()
    wait_for_text(driver, "Password")
    assert_accessible(driver)
