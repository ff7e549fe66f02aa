"""A teacher syncs the course's class list inside the LMS iframe in a real headless Chromium.

The tool is served over https by gunicorn; the LMS is another site (http://localhost) whose
launches carry the Names and Roles claim, and its token and memberships endpoints answer on
loopback (tests/nrps_platform.py), as Moodle's would.
"""

import os

import pytest

from . import test_browser
from .lms import INSTRUCTOR, TestPlatform
from .nrps_platform import NRPS_CLAIM, NrpsPlatform, member
from .server import self_signed_certificate, serve
from .test_browser import CHROMEDRIVER, CHROMIUM, assert_no_policy_violations, wait_for_text

browser_factory = test_browser.browser_factory  # the fixture

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
    reason="Debian's chromium and chromium-driver are not installed (make test installs them)",
)


class RosterLms(TestPlatform):
    """A test LMS whose launches carry the Names and Roles claim of `nrps`."""

    nrps: NrpsPlatform | None = None

    def claims(self, nonce: str = "", message_type: str = "LtiResourceLinkRequest", **overrides):
        body = super().claims(nonce, message_type, **overrides)
        if self.nrps is not None:
            body[NRPS_CLAIM] = self.nrps.claim("24")
        return body


@pytest.fixture
def site_lms(app, db):
    """The LMS web site (course page, login, auth, JWKS) and its services (token, memberships)."""
    from lti_tool.services import keys

    platform = RosterLms(issuer=None)
    platform.register(db)
    nrps = NrpsPlatform(platform)
    keys.ensure_current_key()
    reader = app.test_client()
    nrps.read_tool_jwks = lambda: reader.get("/lti/jwks").get_json()
    nrps.read_tool_keys()
    platform.platform.auth_token_url = nrps.token_url
    platform.platform.enable_nrps = True
    db.session.commit()
    platform.nrps = nrps
    yield platform
    nrps.close()
    platform.server.close()


@pytest.fixture
def tool_url(app, site_lms, migrated, tmp_path):
    with serve(migrated, tmp_path / "instance", tls=self_signed_certificate(tmp_path)) as base:
        site_lms.tool_url = base
        yield base


def test_a_teacher_syncs_the_class_list_from_the_course_page(browser_factory, site_lms,
                                                             tool_url):
    from selenium.webdriver.common.by import By

    site_lms.nrps.set_roster([
        member("318", "Instructor", name="Grace Hopper"),
        member("1", name="Ada Lovelace"),
        member("2", name="Edsger Dijkstra"),
    ])
    site_lms.browser_roles = [INSTRUCTOR]
    driver = browser_factory()
    driver.get(f"{site_lms.issuer}/course")
    driver.switch_to.frame(driver.find_element(By.ID, "tool"))
    wait_for_text(driver, "not been synced from the LMS yet")
    driver.find_element(By.LINK_TEXT, "Sync the class list").click()
    diff = wait_for_text(driver, "Apply these changes")
    assert "2 to add, 0 role changes, 0 to remove" in diff
    assert "Ada Lovelace" in diff and "Edsger Dijkstra" in diff
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    result = wait_for_text(driver, "2 added")
    assert "Done" in result and "Ada Lovelace" in result and "Edsger Dijkstra" in result
    assert "/roster/" in driver.execute_script("return location.pathname")
    driver.find_element(By.LINK_TEXT, "Course media").click()
    course = wait_for_text(driver, "Class list last synced from the LMS")
    assert "3 people, 2 added, 0 changed, 0 removed, 0 skipped" in course
    assert_no_policy_violations(driver)
