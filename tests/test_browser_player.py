"""A teacher's phone video (HEVC in a .mov) is processed and plays in Chromium, in the LMS iframe.

The tool is served over https by gunicorn (see test_browser.py); its jobs go to a broker of
this test's own, and the test runs them here, in its own process, against the served tool's
database and media root: exactly what a worker does.
"""

import subprocess

import pytest

from lti_tool.services import jobs

from .lms import INSTRUCTOR
from .server import self_signed_certificate, serve
from .test_browser import (  # noqa: F401  (fixtures)
    assert_no_policy_violations,
    browser_factory,
    pytestmark,
    site_lms,
    wait_for_text,
)


@pytest.fixture
def tool_url(app, site_lms, migrated, tmp_path):  # noqa: F811
    broker = f"sqla+sqlite:///{tmp_path / 'jobs.sqlite3'}"
    with serve(migrated, tmp_path / "instance", tls=self_signed_certificate(tmp_path),
               CELERY_BROKER_URL=broker) as base:
        site_lms.tool_url = base
        yield base


def hevc_clip(path) -> None:
    """Three seconds of 320x240 HEVC with sound in a QuickTime file, as phones record."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15:duration=3",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
         "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
         "-tag:v", "hvc1", "-c:a", "aac", "-shortest", str(path)],
        check=True)


def play_muted(driver, selector: str = ".player video") -> str:
    """Start the video muted (what autoplay rules allow): 'playing', or the refusal."""
    return driver.execute_async_script("""
        var done = arguments[arguments.length - 1];
        var video = document.querySelector(arguments[0]);
        video.muted = true;
        video.play().then(function () { done('playing'); }, function (e) { done(String(e)); });
    """, selector)


def wait_for(driver, script: str, seconds: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(lambda d: d.execute_script(script))


def test_a_teachers_hevc_upload_is_processed_and_plays_through_hls(
    db, browser_factory, site_lms, tool_url, tmp_path  # noqa: F811
):
    from selenium.webdriver.common.by import By

    clip = tmp_path / "field trip.mov"
    hevc_clip(clip)
    site_lms.browser_roles = [INSTRUCTOR]
    driver = browser_factory()
    driver.get(f"{site_lms.issuer}/course")
    driver.switch_to.frame(driver.find_element(By.ID, "tool"))
    wait_for_text(driver, "Add media")
    driver.find_element(By.LINK_TEXT, "Add media").click()
    wait_for_text(driver, "Add media")
    driver.find_element(By.NAME, "file").send_keys(str(clip))
    driver.find_element(By.NAME, "title").send_keys("Field trip")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for_text(driver, "Waiting to be processed")
    assert driver.execute_script("return document.querySelector('video')") is None
    driver.execute_script("window.sameDocument = true")

    assert jobs.run_waiting() == 1  # what a worker does

    wait_for(driver, "return document.querySelector('.player video')")
    assert driver.execute_script("return window.sameDocument") is True, "no reload"
    assert "Waiting to be processed" not in driver.find_element(By.TAG_NAME, "body").text
    assert play_muted(driver) == "playing"
    wait_for(driver, "return document.querySelector('.player video').currentTime > 1")
    engine, source = driver.execute_script(
        "var v = document.querySelector('.player video'); return [v.dataset.engine, v.currentSrc]")
    assert engine == "hls.js" and source.startswith("blob:"), (engine, source)
    assert_no_policy_violations(driver)
