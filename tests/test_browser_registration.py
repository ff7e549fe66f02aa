"""Dynamic registration in a real Chromium: the LMS admin's page frames /lti/register (cross-site),
the page says what happens next, and its close button posts org.imsglobal.lti.close to the LMS."""

import pytest
from sqlalchemy import select

from lti_tool.models import LTIPlatform

from . import registration_platform
from .journeys import assert_accessible, horizontal_overflow
from .server import self_signed_certificate, serve
from .test_browser import (  # noqa: F401  (fixtures)
    CHROMEDRIVER,
    CHROMIUM,
    assert_no_policy_violations,
    browser_factory,
    wait_for_text,
)

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium not installed")

registration_lms = registration_platform.registration_lms  # the fixture


@pytest.fixture
def tool_url(app, registration_lms, migrated, tmp_path):
    """The tool over https, allowed to fetch the test LMS on loopback."""
    with serve(migrated, tmp_path / "instance", tls=self_signed_certificate(tmp_path),
               REGISTRATION_ALLOW_LOOPBACK="1") as base:
        registration_lms.tool_url = base
        yield base


@pytest.mark.parametrize("width", ["700", "400"])
def test_the_registration_dialog_tells_the_lms_to_close(browser_factory, registration_lms,
                                                        tool_url, db, tmp_path, width):
    from selenium.webdriver.common.by import By

    registration_lms.frame_width = width
    registration_lms.client_id = "AbCdEfGh12" * 15  # one long word
    driver = browser_factory()
    driver.set_window_size(1000, 800)
    driver.get(f"{registration_lms.base}/admin/register")
    driver.switch_to.frame(driver.find_element(By.ID, "dialog"))
    page = wait_for_text(driver, "Registered: waiting for approval")
    assert registration_lms.client_id in page
    assert horizontal_overflow(driver) == 0
    assert_accessible(driver)

    driver.find_element(By.CSS_SELECTOR, "button.lti-close").click()
    driver.switch_to.default_content()
    received = wait_for_text(driver, "received")
    assert 'received {"subject":"org.imsglobal.lti.close"} from ' + tool_url in received
    assert_no_policy_violations(driver)

    [platform] = db.session.scalars(select(LTIPlatform))
    assert platform.registration_pending and not platform.active
    # neither the page's request nor those of its script and styles left the token in the log
    access_log = (tmp_path / "gunicorn.log").read_text()
    assert "GET /lti/register?openid_configuration=[hidden]" in access_log
    assert registration_lms.token not in access_log
