"""A real headless Chromium opens the tool inside a course page of the test LMS.

The tool is served over https by gunicorn; the LMS is another site (http://localhost), so the
tool is a third party in its iframe, as in production.
"""

import os
import shutil
import time

import pytest

from .journeys import save_screenshots
from .lms import TestPlatform
from .server import self_signed_certificate, serve

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
    reason="Debian's chromium and chromium-driver are not installed (make test installs them)",
)


@pytest.fixture
def site_lms(db):
    """A test LMS that is its own web site: course page, login form, auth endpoint, JWKS."""
    platform = TestPlatform(issuer=None)
    platform.register(db)
    yield platform
    platform.server.close()


@pytest.fixture
def tool_url(app, site_lms, migrated, tmp_path):
    with serve(migrated, tmp_path / "instance", tls=self_signed_certificate(tmp_path)) as base:
        site_lms.tool_url = base
        yield base


def chrome(block_cookies_of: tuple[str, str] | None = None, one_process: bool = False):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--ignore-certificate-errors"):
        options.add_argument(flag)
    if one_process:
        # Network throttling applies to the page's own process: keep the cross-site iframe in it.
        options.add_argument("--disable-site-isolation-trials")
        options.add_argument("--disable-features=IsolateOrigins,site-per-process")
    # The console shows what the Content-Security-Policy refused.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if block_cookies_of:
        # The tool's cookies blocked while it is framed by the LMS, partitioned ones included,
        # as in a browser that keeps no third-party cookies at all.
        tool, lms = block_cookies_of
        options.add_experimental_option("prefs", {
            "profile.content_settings.exceptions.cookies": {f"{tool},{lms}": {"setting": 2}},
        })
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver._switch_to = FramePath(driver)
    return driver


def _frame_switcher():
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.switch_to import SwitchTo
    from selenium.webdriver.remote.webelement import WebElement

    class FramePath(SwitchTo):
        """`driver.switch_to` that remembers which iframes (by id or name) the test went into.

        A cross-site iframe's navigation swaps its renderer process, and chromedriver then at
        times falls back to the top page on its own; `back_into_frames` goes in again.
        """

        def __init__(self, driver):
            super().__init__(driver)
            self.path: list[tuple[str, str]] = []

        def frame(self, frame_reference):
            if isinstance(frame_reference, WebElement):
                if name := frame_reference.get_attribute("id"):
                    locator = (By.ID, name)
                else:
                    locator = (By.NAME, frame_reference.get_attribute("name"))
            else:
                locator = (By.NAME, str(frame_reference))
            super().frame(frame_reference)
            self.path.append(locator)

        def default_content(self):
            super().default_content()
            self.path = []

        def window(self, window_name):  # another window starts at its top page
            super().window(window_name)
            self.path = []

        def new_window(self, type_hint=None):
            super().new_window(type_hint)
            self.path = []

        def parent_frame(self):
            super().parent_frame()
            self.path = self.path[:-1]

        def dropped(self) -> bool:
            """Whether chromedriver fell back to the top page from the remembered iframes."""
            return bool(self.path) and self._driver.execute_script("return window === window.top")

        def back_into_frames(self) -> None:
            """Into the remembered iframes again if chromedriver dropped to the top page."""
            if not self.dropped():
                return
            path, self.path = self.path, []
            try:
                for locator in path:
                    self.frame(self._driver.find_element(*locator))
            except WebDriverException:  # not there yet: from the top again at the next poll
                super().default_content()
                self.path = path
                raise

    return FramePath


FramePath = _frame_switcher()


@pytest.fixture
def browser_factory(request, tool_url):
    """Browsers quit before the tool stops (gunicorn would wait on their open connections).

    When the journey failed, each browser's screen is kept in test-artifacts/ first.
    """
    drivers = []

    def make(**kwargs):
        drivers.append(chrome(**kwargs))
        return drivers[-1]

    yield make
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        save_screenshots(drivers, request.node.nodeid)
    for driver in drivers:
        driver.quit()


def wait_for_text(driver, text: str, seconds: float = 20) -> str:
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(d) -> bool:
        d.switch_to.back_into_frames()
        # The top page read by a drop during the read does not count.
        return text in d.find_element(By.TAG_NAME, "body").text and not d.switch_to.dropped()

    try:
        # A page that moves on (the picker's auto-posted answer, the launch's redirects) replaces
        # the body being read: chromedriver says stale element, or "Node with given id does not
        # belong to the document"; the next poll reads the new page.
        WebDriverWait(driver, seconds, ignored_exceptions=(WebDriverException,)).until(shown)
    except TimeoutException:
        where = driver.execute_script("return location.href")
        shown = driver.find_element(By.TAG_NAME, "body").text
        message = f"{text!r} never appeared; at {where} the page says {shown!r}"
        raise AssertionError(message) from None
    return driver.find_element(By.TAG_NAME, "body").text


def assert_no_policy_violations(driver) -> None:
    refused = [e["message"] for e in driver.get_log("browser")
               if "Content Security Policy" in e["message"]]
    assert refused == []


def test_a_student_opens_the_tool_inside_the_course_page(browser_factory, site_lms, tool_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser_factory()
    driver.get(f"{site_lms.issuer}/course")
    driver.switch_to.frame(driver.find_element(By.ID, "tool"))
    text = wait_for_text(driver, "No media in this course yet.")
    assert "Modern History" in text and "Add media" not in text
    # The launch answered with the page; the frame's address is the page's own.
    page = driver.execute_script("return location.href")
    assert page.startswith(f"{tool_url}/media/category/")
    assert_no_policy_violations(driver)
    # Reloading the frame asks for the page again, not for the used launch.
    driver.execute_script("document.body.dataset.before = 'reload'; location.reload()")
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.body && !document.body.dataset.before"))
    text = wait_for_text(driver, "No media in this course yet.")
    assert "Modern History" in text and "refused" not in text.lower()
    assert driver.execute_script("return location.href") == page
    assert driver.execute_script("return performance.getEntriesByType('navigation')[0].type") \
        == "reload"


def test_with_third_party_cookies_blocked_the_tool_continues_in_a_new_window(
    browser_factory, site_lms, tool_url
):
    from selenium.webdriver.common.by import By

    driver = browser_factory(block_cookies_of=(tool_url, site_lms.issuer))
    driver.get(f"{site_lms.issuer}/course")
    driver.switch_to.frame(driver.find_element(By.ID, "tool"))
    wait_for_text(driver, "Open the media tool in a new window")
    driver.find_element(By.ID, "lti1p3-new-tab-link").click()
    new_window = [h for h in driver.window_handles if h != driver.current_window_handle][0]
    driver.switch_to.window(new_window)
    wait_for_text(driver, "Modern History")
    assert_no_policy_violations(driver)


def test_a_teacher_uploads_inside_the_iframe_and_sees_the_progress(
    browser_factory, site_lms, tool_url, tmp_path
):
    from selenium.webdriver.common.by import By

    from .lms import INSTRUCTOR
    from .test_media import MP4

    video = tmp_path / "lecture.mp4"
    video.write_bytes(MP4 * 2500)  # 2.6 MB
    site_lms.browser_roles = [INSTRUCTOR]
    driver = browser_factory(one_process=True)
    driver.get(f"{site_lms.issuer}/course")
    driver.switch_to.frame(driver.find_element(By.ID, "tool"))
    wait_for_text(driver, "Add media")
    driver.find_element(By.LINK_TEXT, "Add media").click()
    wait_for_text(driver, "Add media")
    driver.find_element(By.NAME, "file").send_keys(str(video))
    title = driver.find_element(By.NAME, "title")
    assert title.get_attribute("value"), "filled in from the file name"
    title.clear()  # the teacher types their own
    title.send_keys("Lecture 4")
    driver.set_network_conditions(latency=5, download_throughput=10_000_000,
                                  upload_throughput=800_000)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    seen = set()
    for _ in range(200):
        status = driver.execute_script(
            "var s = document.querySelector('[data-status]'); return s ? s.textContent : null")
        if status:
            seen.add(status)
        if status is None and "Lecture 4" in driver.find_element(By.TAG_NAME, "body").text:
            break
        time.sleep(0.05)
    assert any("% uploaded" in s for s in seen), seen
    assert "Added “Lecture 4”" in wait_for_text(driver, "Lecture 4")
    assert driver.execute_script("return location.pathname").startswith("/media/")
    assert_no_policy_violations(driver)


def test_a_teacher_returns_to_the_course_from_the_picker(browser_factory, site_lms, tool_url):
    """The picker's answer is posted to the LMS by the tool's own script, across origins."""
    from selenium.webdriver.common.by import By

    from .lms import INSTRUCTOR

    site_lms.browser_roles = [INSTRUCTOR]
    site_lms.browser_message_type = "LtiDeepLinkingRequest"
    driver = browser_factory()
    driver.get(f"{site_lms.issuer}/course")
    driver.switch_to.frame(driver.find_element(By.ID, "tool"))
    wait_for_text(driver, "Cancel")
    driver.find_element(By.CSS_SELECTOR, "button[value=cancel]").click()
    wait_for_text(driver, "Back in the course")
    assert len(site_lms.returned) == 1
    assert_no_policy_violations(driver)
